"""Tables: subscriptions (with committed cursors), webhook dead letters, publish idempotency."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from exchange.db import Base, UtcDateTime


class SubscriptionRow(Base):
    __tablename__ = "subscriptions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), index=True)
    consumer: Mapped[str] = mapped_column(String(64), index=True)  # department id
    client_id: Mapped[str] = mapped_column(String(64))
    fields: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    start: Mapped[str] = mapped_column(String(40))
    # Committed position: {"<partition>": next_offset}; missing partitions start at `start`.
    cursor: Mapped[dict[str, int]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # active | closed
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    webhook_secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # sealed
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class DeadLetterRow(Base):
    __tablename__ = "webhook_dead_letters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(String(40), index=True)
    cursor_from: Mapped[dict[str, int]] = mapped_column(JSON)
    cursor_to: Mapped[dict[str, int]] = mapped_column(JSON)
    record_ids: Mapped[list[str]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class IdempotencyRow(Base):
    """A publish request seen before: the same key from the same client returns this answer."""

    __tablename__ = "publish_idempotency"
    __table_args__ = (UniqueConstraint("client_id", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    # none_as_null: "not yet" is SQL NULL, so guards can test it with IS NULL.
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    # Tags the batch's first record (header) and guards every later change of the claim.
    request_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The answer, written while the Kafka transaction is still open: if a crash leaves the
    # claim unsettled, whether that batch is visible in Kafka decides (dataplane.outcome).
    staged: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

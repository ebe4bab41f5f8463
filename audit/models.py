"""Audit index tables in the control-plane database (Alembic branch ``audit``).

The Kafka topic is the source of truth; these rows index it for queries and proofs. The
``audit_head`` row is the single-writer lock that hands out leaf indexes without gaps.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from exchange.db import Base


class AuditEventRow(Base):
    __tablename__ = "audit_events"

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(32), index=True)  # RFC 3339 UTC, sorts as text
    type: Mapped[str] = mapped_column(String(100), index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    department: Mapped[str | None] = mapped_column(String(200), index=True)
    topic: Mapped[str | None] = mapped_column(String(300), index=True)
    outcome: Mapped[str] = mapped_column(String(20))
    entry: Mapped[bytes] = mapped_column(LargeBinary)  # canonical bytes, exactly as hashed
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(64))


class AuditSubjectRow(Base):
    __tablename__ = "audit_subjects"

    subject: Mapped[str] = mapped_column(String(64), primary_key=True)  # HMAC hex
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class AuditHeadRow(Base):
    """One row (id=1): log size, last leaf hash, and what pruning kept of the pruned prefix."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    log_id: Mapped[str] = mapped_column(String(32))  # tags this log's messages in Kafka
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(128), default="")
    hash: Mapped[str] = mapped_column(String(16), default="sha256")
    pruned: Mapped[int] = mapped_column(BigInteger, default=0)
    anchor: Mapped[list[str]] = mapped_column(JSON, default=list)  # hex compact range
    anchor_last: Mapped[str] = mapped_column(String(128), default="")
    # Offset after this log's last message in Kafka as the index knows it (None: unknown);
    # anything of ours beyond it is a batch Kafka took but the index did not (a crash).
    kafka_next: Mapped[int | None] = mapped_column(BigInteger, nullable=True, default=None)


class AuditCheckpointRow(Base):
    __tablename__ = "audit_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(64))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(32))


Index("ix_audit_subjects_idx", AuditSubjectRow.idx)

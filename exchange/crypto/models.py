"""Control-plane tables of data-encryption keys (wrapped only; never plaintext keys).

A *family* is one (topic, field path) and owns a short random ``dek_id`` carried in envelopes;
each family has numbered versions. A shredded version keeps its row (tombstone, ``wrapped``
NULL) so version numbers are never reused and old envelopes report "shredded".
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from exchange.db import Base, UtcDateTime


class DekFamilyRow(Base):
    __tablename__ = "crypto_dek_families"
    __table_args__ = (UniqueConstraint("topic", "field", name="uq_crypto_family_topic_field"),)
    dek_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), index=True)
    field: Mapped[str] = mapped_column(String(255))
    owner: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class DekVersionRow(Base):
    __tablename__ = "crypto_dek_versions"
    dek_id: Mapped[str] = mapped_column(ForeignKey("crypto_dek_families.dek_id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    cipher: Mapped[str] = mapped_column(String(16))
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    kek_alias: Mapped[str] = mapped_column(String(128), index=True)
    kek_version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # active | retired | shredded
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    shredded_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

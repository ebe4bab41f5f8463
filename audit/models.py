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


# Rows of the subject table per bucket. A subject row's key is (bucket, subject, idx): the
# HMAC subjects are random, so a key led by the subject scatters every insert over the whole
# B-tree (~26 µs of CPU per row in a bare SQLite loop at 200,000+ events, one dirty page per
# row); led by a bucket that only grows, a batch's inserts stay inside the current bucket's
# few hundred pages (~3 µs per row, bench/RESULTS.md "Branch subjbucket"). The bucket counts
# ROWS, not events (a delivery page's event carries up to 500 subjects, most events 0-2): the
# audit head keeps the current bucket and its row count and the append moves to the next
# bucket once SUBJECT_BUCKET_ROWS rows are in it (between events: one event's rows share a
# bucket). A subject search costs one index seek per bucket: ~2 rows per typical event
# makes ~245 buckets at 1,000,000 events and ~24,400 at 100,000,000 (fewer with pruning).
# Queries never rely on how buckets were chosen, only on (bucket, subject) being the key.
SUBJECT_BUCKET_ROWS = 8192


class AuditSubjectRow(Base):
    __tablename__ = "audit_subjects"
    __table_args__ = {"sqlite_with_rowid": False}

    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
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
    # The subject table's current bucket and how many rows it holds (SUBJECT_BUCKET_ROWS).
    subject_bucket: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    subject_rows: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class AuditCheckpointRow(Base):
    __tablename__ = "audit_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(64))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(32))


Index("ix_audit_subjects_idx", AuditSubjectRow.idx)

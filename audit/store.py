"""The audit sink: events made durable in Kafka (source of truth) and indexed in the database.

Leaf indexes come from the ``audit_head`` row, locked for the whole write, so several gateway
processes sharing one database never produce gaps or duplicates and Kafka sees events in
index order. Within a process, concurrent callers are group-committed: one caller writes
everything queued as one batch (one Kafka round trip, one commit), then hands the writer role
to the next waiter. Nothing returns before Kafka (acks=all) and the database both hold the
events; otherwise :class:`DependencyUnavailable` is raised and the caller must not
acknowledge its action.

Known window: if the database commit fails *after* Kafka acknowledged a batch (a crash or a
lost database between the two), those messages stay in the topic while their indexes are
handed out again; ``verify --source kafka`` then reports the index as reordered. That is the
truth (the topic holds an event the index lost) and needs an operator, not a silent repair.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from audit.events import AuditEvent, from_record, now_ts
from audit.keys import SubjectHasher
from audit.merkle import Hasher
from audit.models import AuditEventRow, AuditHeadRow, AuditSubjectRow
from exchange.auditing import AuditRecord
from exchange.db import transaction
from exchange.errors import ConfigurationError, DependencyUnavailable, ExchangeError
from exchange.kafka.port import KafkaPort, OutRecord

log = logging.getLogger(__name__)

HEAD_ID = 1
INDEX_HEADER = "audit-index"
LOG_HEADER = "audit-log"


class EventBus:
    """Where events become durable first. The Kafka adapter, or nothing (index-only tools)."""

    def __init__(self, kafka: KafkaPort | None, topic: str) -> None:
        self.kafka, self.topic = kafka, topic
        self.log_id = ""  # set from the head row: several logs may share one topic

    def send(self, events: Sequence[tuple[AuditEvent, bytes]]) -> None:
        if self.kafka is None:
            return
        out = [
            OutRecord(
                key=None,
                value=entry,
                headers=[
                    (LOG_HEADER, self.log_id.encode()),
                    (INDEX_HEADER, str(ev.index).encode()),
                ],
            )
            for ev, entry in events
        ]
        self.kafka.send_many_durably(self.topic, out)


@dataclass
class _Pending:
    records: list[AuditRecord]
    wake: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    error: BaseException | None = None


def ensure_head(sessions: sessionmaker[Session], h: Hasher) -> str:
    """Create the head row once; refuse to run a log with a different hash than it began."""
    try:
        with transaction(sessions) as s:
            if s.get(AuditHeadRow, HEAD_ID) is None:
                log_id = secrets.token_hex(16)
                s.add(AuditHeadRow(id=HEAD_ID, log_id=log_id, size=0, hash=h.name, anchor=[]))
    except DependencyUnavailable as exc:
        if not isinstance(exc.__cause__, IntegrityError):  # a concurrent first start won
            raise
    with transaction(sessions) as s:
        head = s.get(AuditHeadRow, HEAD_ID)
        assert head is not None
        if head.hash != h.name:
            raise ConfigurationError(f"audit log uses {head.hash}; settings ask for {h.name}")
        return head.log_id


class AuditLog:
    """Implements :class:`exchange.auditing.AuditSink`."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        bus: EventBus,
        h: Hasher,
        subjects: SubjectHasher,
        clock: Callable[[], str] = now_ts,
    ) -> None:
        self.sessions, self.bus, self.h = sessions, bus, h
        self.subjects, self.clock = subjects, clock
        self._queue: list[_Pending] = []
        self._lock = threading.Lock()
        self._writing = False

    def append(self, record: AuditRecord) -> None:
        self.append_many([record])

    def append_many(self, records: Sequence[AuditRecord]) -> None:
        if not records:
            return
        mine = _Pending(list(records))
        with self._lock:
            self._queue.append(mine)
            lead, self._writing = not self._writing, True
        if not lead:
            mine.wake.wait()  # woken when written, or when promoted to write the next batch
        if not mine.done:
            self._lead()
        if mine.error is not None:
            raise DependencyUnavailable("audit log unavailable") from mine.error

    def _lead(self) -> None:
        """Write everything queued as one batch, then hand the writer role to a waiter."""
        with self._lock:
            batch, self._queue = self._queue, []
        error = self._write_batch([r for p in batch for r in p.records])
        for p in batch:
            p.done, p.error = True, error
        with self._lock:
            successor = self._queue[0] if self._queue else None
            self._writing = successor is not None
        for p in batch:
            p.wake.set()
        if successor is not None:
            successor.wake.set()

    def _write_batch(self, records: list[AuditRecord]) -> BaseException | None:
        try:
            self._write(records)
            return None
        except (ExchangeError, Exception) as exc:  # any failure: not durable, fail closed
            log.warning("audit append failed: %s", type(exc).__name__)
            return exc

    def _write(self, records: list[AuditRecord]) -> None:
        with transaction(self.sessions) as s:
            head = self._lock_head(s)
            ts, prev = self.clock(), head.last_hash
            events: list[tuple[AuditEvent, bytes]] = []
            rows: list[dict[str, object]] = []
            subject_rows: list[dict[str, object]] = []
            for n, rec in enumerate(records):
                hashed = tuple(self.subjects(x) for x in rec.subjects)
                ev = from_record(rec, head.size + n, prev, hashed, ts)
                entry = ev.canonical()
                leaf = self.h.leaf(entry)
                rows.append(_row(ev, entry, leaf))
                subject_rows += ({"subject": x, "idx": ev.index} for x in ev.subjects)
                events.append((ev, entry))
                prev = leaf.hex()
            # Core executemany; constraint problems surface before anything reaches Kafka.
            s.execute(insert(AuditEventRow), rows)
            if subject_rows:
                s.execute(insert(AuditSubjectRow), subject_rows)
            self.bus.send(events)
            head.size += len(records)
            head.last_hash = prev

    def _lock_head(self, s: Session) -> AuditHeadRow:
        # An UPDATE takes the row lock on PostgreSQL and the write lock on SQLite.
        s.execute(
            update(AuditHeadRow).where(AuditHeadRow.id == HEAD_ID).values(size=AuditHeadRow.size)
        )
        head = s.get(AuditHeadRow, HEAD_ID, populate_existing=True, with_for_update=True)
        if head is None:
            raise DependencyUnavailable("audit log is not initialised")
        return head


def _row(ev: AuditEvent, entry: bytes, leaf: bytes) -> dict[str, object]:
    return {
        "idx": ev.index,
        "ts": ev.ts,
        "type": ev.type,
        "actor": ev.actor,
        "department": ev.department,
        "topic": ev.topic,
        "outcome": ev.outcome,
        "entry": entry,
        "leaf_hash": leaf,
    }

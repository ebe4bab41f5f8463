"""The audit sink: events made durable in Kafka (source of truth) and indexed in the database.

Leaf indexes come from the ``audit_head`` row, locked for the whole write, so several gateway
processes sharing one database never produce gaps or duplicates and Kafka sees events in
index order. Within a process, concurrent callers are group-committed: one caller writes
everything queued as one batch (one Kafka round trip, one commit), then hands the writer role
to the next waiter. Nothing returns before Kafka (acks=all) and the database both hold the
events; otherwise :class:`DependencyUnavailable` is raised and the caller must not
acknowledge its action.

If the database commit fails *after* Kafka acknowledged a batch (a crash or a lost database
between the two), those messages stay in the topic. So before handing out indexes the writer,
under the head lock, reads the topic past the offset the head last recorded and adopts this
log's messages that continue the chain (:mod:`audit.reconcile`); the indexes are never handed
out twice and both ``verify --source kafka`` and ``--source db`` keep passing. In the common
case that costs one offsets query per batch.

**The index commit does not wait for the disk when Kafka backs the log.** Kafka's acks=all
write is the durable record (an event is acknowledged only after it), and a lost index commit
is exactly the crash case above: the next writer adopts the batch from the topic. So the
appending transaction commits without its own flush: on SQLite through sessions of its own
whose connections run ``PRAGMA synchronous=NORMAL`` (WAL: no fsync per commit; the WAL is
synced at checkpoints and by the next ``FULL`` commit of any other connection, which syncs
everything written before it), on PostgreSQL with ``SET LOCAL synchronous_commit = off``
(flushed by the WAL writer within a few hundred milliseconds, or by the next synchronous
commit of anyone). Only a machine crash (power loss, kernel panic) can lose such a commit,
never a process crash, and never a commit that an index write made after it (a checkpoint,
a witness cosignature, a control-plane change) already covers: both databases flush their log
in order. Other writers of the same database (checkpoint signing, witnessing, control-plane
writes) keep full durability, and so does an index-only log (no Kafka: offline tools), whose
index is the only copy. This makes Kafka's own durability the log's: with a one-node broker on
the same machine a power loss can lose what its page cache held (as for every published
record); production runs a replicated cluster (``min.insync.replicas`` ≥ 2).

After a machine crash the index may therefore end a few batches short of the topic. A
Kafka-backed log catches up when it opens (:func:`audit.factory.open_log`: the gateway's
``system.started`` append, or :meth:`AuditLog.catch_up`), before the gateway serves a query.
A reader of the index alone (``verify --offline --source db``, ``exchange audit prune``)
sees it as the crash left it — consistent (the lost commits took their head update with
them), only shorter — until a Kafka-backed process opens the log; ``--source kafka`` sees
every acknowledged event.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import Table, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from audit.events import AuditEvent, now_ts, record_entry
from audit.keys import SubjectHasher
from audit.merkle import Hasher
from audit.models import SUBJECT_BUCKET_ROWS, AuditEventRow, AuditHeadRow, AuditSubjectRow
from audit.reconcile import FIRST_WINDOW, INDEX_HEADER, LOG_HEADER, continuation, reached_known
from exchange import metrics
from exchange.auditing import AuditRecord
from exchange.db import Base, relaxed_commit, relaxed_sessions, transaction
from exchange.errors import (
    ConfigurationError,
    DependencyUnavailable,
    ExchangeError,
    KafkaUnavailable,
)
from exchange.kafka.port import InRecord, KafkaPort, OutRecord, Position, TopicReaderPort

log = logging.getLogger(__name__)

HEAD_ID = 1
# From this many events a batch's encoding outlasts the end-of-topic round trip, which is then
# asked on a helper thread meanwhile; a small group asks it inline (two thread hand-offs would
# cost more than they hide on a loaded machine).
OVERLAP_MIN = 64
__all__ = ["HEAD_ID", "INDEX_HEADER", "LOG_HEADER", "AuditLog", "EventBus", "ensure_head"]


class EventBus:
    """Where events become durable first. The Kafka adapter, or nothing (index-only tools)."""

    def __init__(self, kafka: KafkaPort | None, topic: str) -> None:
        self.kafka, self.topic = kafka, topic
        self.log_id = ""  # set from the head row: several logs may share one topic
        self._reader: TopicReaderPort | None = None  # used by the writer only (head lock)

    def send(self, entries: Sequence[tuple[int, bytes]]) -> list[Position]:
        """Each (leaf index, canonical entry) as one message, in order, acks=all."""
        if self.kafka is None:
            return []
        log_id = (LOG_HEADER, self.log_id.encode())
        out = [
            OutRecord(None, entry, [log_id, (INDEX_HEADER, str(index).encode())])
            for index, entry in entries
        ]
        return self.kafka.send_many_durably(self.topic, out)

    def end(self) -> int | None:
        """The offset after the (one-partition) topic's last message; None without Kafka."""
        # On the port, not the reader: the reader's connection may be held by its fetch.
        return None if self.kafka is None else self.kafka.end_offsets(self.topic)[0]

    def first(self) -> int:
        """The topic's first offset still held (retention may have deleted older ones)."""
        r = self._topic_reader()
        r.seek({})
        return r.positions()[0]

    def read(self, start: int, stop: int, idle_ms: int = 3000) -> list[InRecord]:
        """Every message in [start, stop); fails rather than return part of the range."""
        r = self._topic_reader()
        r.seek({0: start})
        out: list[InRecord] = []
        while r.positions()[0] < stop:
            batch = r.poll(timeout_ms=idle_ms, max_records=2000)
            if not batch:
                raise KafkaUnavailable(f"could not read {self.topic} up to offset {stop}")
            out += (m for m in batch if m.offset < stop)
        return out

    def _topic_reader(self) -> TopicReaderPort:
        if self._reader is None:
            assert self.kafka is not None
            self._reader = self.kafka.reader(self.topic)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


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
        # The appending transaction's sessions: relaxed durability only when Kafka holds the
        # durable copy (module docstring); an index-only log's index is the only copy.
        self.append_sessions, self._async_commit = (
            relaxed_sessions(sessions) if bus.kafka is not None else (sessions, False)
        )
        self._queue: list[_Pending] = []
        self._lock = threading.Lock()
        self._writing = False
        self._helper: ThreadPoolExecutor | None = None

    def append(self, record: AuditRecord) -> None:
        self.append_many([record])

    def append_many(self, records: Sequence[AuditRecord]) -> None:
        if records:
            self._submit(list(records))

    def catch_up(self) -> None:
        """Adopt now what Kafka holds of this log beyond the index (at start-up: after a
        machine crash the index may have lost its last commits; see the module docstring).
        Raises :class:`DependencyUnavailable` like an append."""
        if self.bus.kafka is not None:
            self._submit([])

    def _submit(self, records: list[AuditRecord]) -> None:
        mine = _Pending(records)
        with self._lock:
            self._queue.append(mine)
            lead, self._writing = not self._writing, True
            metrics.AUDIT_QUEUE.inc(len(mine.records))
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
        records = [r for p in batch for r in p.records]
        metrics.AUDIT_QUEUE.dec(len(records))
        error = self._write_batch(records)
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
            with metrics.AUDIT_APPEND_SECONDS.time():
                self._write(records)
            return None
        except (ExchangeError, Exception) as exc:  # any failure: not durable, fail closed
            metrics.AUDIT_APPEND_FAILURES.inc()
            log.warning("audit append failed: %s", type(exc).__name__)
            return exc

    def _write(self, records: list[AuditRecord]) -> None:
        with transaction(self.append_sessions) as s:
            if self._async_commit:  # PostgreSQL; ends with this transaction
                relaxed_commit(s)
            head = self._lock_head(s)
            # Kafka's end is asked (a round trip) while a big batch is encoded for the head as
            # the index has it; if the topic holds more of this log, those events are adopted
            # first and the batch is encoded again after them.
            end = self._ask_end() if len(records) >= OVERLAP_MIN else None
            ts = self.clock()
            batch = self._encode(records, head.size, head.last_hash, ts)
            if self._catch_up(s, head, self.bus.end() if end is None else end.result()):
                batch = self._encode(records, head.size, head.last_hash, ts)
            if not records:
                return
            rows, subject_rows, entries, prev = batch
            if subject_rows:
                subject_rows = bucketed(head, subject_rows)
            # One executemany per table; constraint problems surface before Kafka sees a thing.
            insert_rows(s, AuditEventRow, EVENT_COLUMNS, rows)
            if subject_rows:
                insert_rows(s, AuditSubjectRow, SUBJECT_COLUMNS, subject_rows)
            sent = self.bus.send(entries)
            head.size += len(records)
            head.last_hash = prev
            if sent:
                head.kafka_next = sent[-1].offset + 1

    def _ask_end(self) -> Future[int | None] | None:
        """``bus.end()`` on a helper thread (the writer's only: one question at a time)."""
        if self.bus.kafka is None:
            return None
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="audit-end")
        return self._helper.submit(self.bus.end)

    def _encode(
        self, records: list[AuditRecord], size: int, prev: str, ts: str
    ) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[tuple[int, bytes]], str]:
        """Rows, subject rows, (index, entry) pairs and the last leaf hash of ``records`` as
        leaves ``size``… after the leaf hash ``prev``."""
        leaf_of, keyed = self.h.leaf, self.subjects
        entries: list[tuple[int, bytes]] = []
        rows: list[tuple[object, ...]] = []
        subject_rows: list[tuple[object, ...]] = []
        for idx, rec in enumerate(records, size):
            subjects = sorted({keyed(x) for x in rec.subjects})
            entry = record_entry(rec, idx, prev, subjects, ts)
            leaf = leaf_of(entry)
            rows.append(
                (idx, ts, rec.type, rec.actor, rec.department, rec.topic, rec.outcome, entry, leaf)
            )
            subject_rows += ((x, idx) for x in subjects)
            entries.append((idx, entry))
            prev = leaf.hex()
        return rows, subject_rows, entries, prev

    def _catch_up(self, s: Session, head: AuditHeadRow, end: int | None) -> bool:
        """Adopt what Kafka holds of this log beyond the index (see :mod:`audit.reconcile`);
        ``end``: the topic's end offset (None without Kafka). Whether anything was adopted."""
        if end is None or (head.kafka_next is not None and head.kafka_next >= end):
            return False  # the common case: nothing past our last batch
        messages = self._tail(head, self.bus.first(), end)
        found = continuation(messages, self.bus.log_id, head.size, head.last_hash, self.h)
        if found:
            log.warning("audit index behind Kafka: adopting %d events from the topic", len(found))
            s.execute(insert(AuditEventRow), [_row(a.event, a.entry, a.leaf) for a in found])
            subjects = [(x, a.event.index) for a in found for x in a.event.subjects]
            if subjects:
                insert_rows(s, AuditSubjectRow, SUBJECT_COLUMNS, bucketed(head, subjects))
            head.size += len(found)
            head.last_hash = found[-1].leaf.hex()
        head.kafka_next = end
        return bool(found)

    def _tail(self, head: AuditHeadRow, first: int, end: int) -> list[InRecord]:
        if head.kafka_next is not None:
            return self.bus.read(max(first, head.kafka_next), end)
        # Offset unknown: backwards from the end until we meet an event the index holds.
        start, window = end, FIRST_WINDOW
        messages: list[InRecord] = []
        while start > first:
            stop, start = start, max(first, start - window)
            messages = self.bus.read(start, stop) + messages
            if reached_known(messages, self.bus.log_id, head.size):
                break
            window *= 4
        return messages

    def _lock_head(self, s: Session) -> AuditHeadRow:
        # An UPDATE takes the row lock on PostgreSQL and the write lock on SQLite.
        s.execute(
            update(AuditHeadRow).where(AuditHeadRow.id == HEAD_ID).values(size=AuditHeadRow.size)
        )
        head = s.get(AuditHeadRow, HEAD_ID, populate_existing=True, with_for_update=True)
        if head is None:
            raise DependencyUnavailable("audit log is not initialised")
        return head


EVENT_COLUMNS = (
    *("idx", "ts", "type", "actor", "department", "topic", "outcome"),
    *("entry", "leaf_hash"),
)
SUBJECT_COLUMNS = ("bucket", "subject", "idx")


def bucketed(
    head: AuditHeadRow,
    subject_rows: Sequence[tuple[object, ...]],
    per: int = SUBJECT_BUCKET_ROWS,
) -> list[tuple[object, ...]]:
    """``(subject, idx)`` rows (in index order) as ``(bucket, subject, idx)`` rows: the head's
    current bucket until it holds ``per`` rows, then the next one, moving only between
    events (see :data:`audit.models.SUBJECT_BUCKET_ROWS`). Advances the head."""
    bucket, filled = head.subject_bucket or 0, head.subject_rows or 0
    out: list[tuple[object, ...]] = []
    last = None
    for subject, idx in subject_rows:
        if idx != last and filled >= per:
            bucket, filled = bucket + 1, 0
        out.append((bucket, subject, idx))
        filled += 1
        last = idx
    head.subject_bucket, head.subject_rows = bucket, filled
    return out


_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def insert_rows(
    s: Session, model: type[Base], columns: Sequence[str], rows: Sequence[tuple[object, ...]]
) -> None:
    """One INSERT of many rows (tuples in ``columns`` order) through the driver's executemany.

    The ORM's bulk insert (and even Core's) builds and processes a parameter dict per row,
    about as much CPU as the whole canonical encoding of an event; the driver takes the tuples
    as they are (``str``, ``int``, ``None`` and ``bytes`` only, which every driver binds)."""
    conn = s.connection()
    mark = _MARKS.get(conn.dialect.paramstyle)
    table = cast(Table, model.__table__)
    if mark is None:  # a driver with named placeholders: the general path
        conn.execute(insert(table), [dict(zip(columns, r, strict=True)) for r in rows])
        return
    names = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in columns)
    into = conn.dialect.identifier_preparer.format_table(table)
    marks = ", ".join([mark] * len(columns))
    sql = f"INSERT INTO {into} ({names}) VALUES ({marks})"  # noqa: S608 (quoted identifiers)
    conn.exec_driver_sql(sql, list(rows))


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

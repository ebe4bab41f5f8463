"""Read the stored log for verification: from the database index or from the Kafka topic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session, sessionmaker

from audit.models import AuditCheckpointRow, AuditHeadRow
from audit.settings import checkpoint_topic
from audit.store import HEAD_ID, LOG_HEADER
from audit.verify import Anchor, StoredEntry
from exchange.db import transaction
from exchange.errors import NotFound
from exchange.kafka.port import InRecord, KafkaPort

CHUNK = 5000


# Plain SQL on the driver's own cursor: no ORM entities, no SQLAlchemy rows nor type processing
# for a million rows (values come back as the driver gives them, which is what an edited row
# must be compared as). ``{m}``: the driver's positional placeholder.
_EVENTS = (
    "SELECT idx, entry, leaf_hash, ts, type, actor, department, topic, outcome"
    " FROM audit_events WHERE idx > {m} AND idx < {m} ORDER BY idx LIMIT {m}"
)
_END = 2**63 - 1  # BIGINT's largest
_SUBJECTS = "SELECT idx, subject FROM audit_subjects WHERE idx BETWEEN {m} AND {m}"
_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_new = tuple.__new__


def db_entries(
    sessions: sessionmaker[Session], after: int = -1, before: int = _END
) -> Iterator[StoredEntry]:
    """Every indexed event (with ``after`` < index < ``before``) in index order, with its
    columns and subject rows as stored."""
    while True:
        with transaction(sessions) as s:
            rows, subject_rows = _chunk(s.connection(), after, before)
        if not rows:
            return
        subjects: dict[int, list[str]] = {}
        for idx, subj in subject_rows:
            if (have := subjects.get(idx)) is None:
                subjects[idx] = [subj]
            else:
                have.append(subj)
        for idx, entry, leaf, ts, type_, actor, dept, topic, outcome in rows:
            subj = tuple(sorted(subjects.get(idx, ())))
            view = (ts, type_, actor, dept, topic, outcome, subj)  # as verify.view_of
            if type(entry) is not bytes or type(leaf) is not bytes:
                entry, leaf = _bytes(entry), _bytes(leaf)
            yield _new(StoredEntry, (entry, idx, leaf, view, ""))  # StoredEntry(...), faster
        after = rows[-1][0]


def _chunk(conn: Connection, after: int, before: int) -> tuple[list[Any], list[Any]]:
    """Up to :data:`CHUNK` event rows after ``after`` and their subject rows, as tuples."""
    mark = _MARKS.get(conn.dialect.paramstyle)
    if mark is None:  # a driver with named placeholders: through SQLAlchemy
        return _chunk_named(conn, after, before)
    cur = conn.connection.cursor()  # the session's own connection, inside its transaction
    try:
        cur.execute(_EVENTS.format(m=mark), (after, before, CHUNK))
        rows = list(cur.fetchall())
        subject_rows: list[Any] = []
        if rows:
            cur.execute(_SUBJECTS.format(m=mark), (rows[0][0], rows[-1][0]))
            subject_rows = list(cur.fetchall())
        return rows, subject_rows
    finally:
        cur.close()


_EVENTS_NAMED = text(
    _EVENTS.replace("{m}", ":after", 1).replace("{m}", ":before", 1).replace("{m}", ":n")
)
_SUBJECTS_NAMED = text(_SUBJECTS.replace("{m}", ":first", 1).replace("{m}", ":last"))


def _chunk_named(conn: Connection, after: int, before: int) -> tuple[list[Any], list[Any]]:
    params = {"after": after, "before": before, "n": CHUNK}
    rows = [tuple(r) for r in conn.execute(_EVENTS_NAMED, params)]
    if not rows:
        return rows, []
    span = {"first": rows[0][0], "last": rows[-1][0]}
    return rows, [tuple(r) for r in conn.execute(_SUBJECTS_NAMED, span)]


def _bytes(value: object) -> bytes:
    # An edited row may come back as text (SQLite is loosely typed): compare it as stored.
    return value.encode() if isinstance(value, str) else bytes(value)  # type: ignore[call-overload]


def kafka_entries(
    kafka: KafkaPort, topic: str, log_id: str, idle_ms: int = 2000
) -> Iterator[StoredEntry]:
    """This log's messages of the (one-partition) audit topic, in offset order, to its end."""
    for rec in _messages(kafka, topic, log_id, idle_ms):
        yield StoredEntry(rec.value, where=f"offset {rec.offset}")


def kafka_checkpoints(kafka: KafkaPort, topic: str, log_id: str) -> list[str]:
    """The signed notes kept beside the topic (none if that topic does not exist)."""
    try:
        return [r.value.decode() for r in _messages(kafka, checkpoint_topic(topic), log_id)]
    except NotFound:
        return []


def _messages(kafka: KafkaPort, topic: str, log_id: str, idle_ms: int = 2000) -> Iterator[InRecord]:
    if topic not in kafka.list_topics():
        raise NotFound(f"audit topic {topic} does not exist")
    want = log_id.encode()
    reader = kafka.reader(topic)
    try:
        reader.seek({})
        end = reader.end_offsets()
        while any(pos < end[p] for p, pos in reader.positions().items()):
            batch = reader.poll(timeout_ms=idle_ms, max_records=2000)
            if not batch:
                break
            yield from (r for r in batch if dict(r.headers).get(LOG_HEADER) == want)
    finally:
        reader.close()


def checkpoint_notes(sessions: sessionmaker[Session]) -> list[str]:
    with transaction(sessions) as s:
        return list(s.scalars(select(AuditCheckpointRow.note).order_by(AuditCheckpointRow.size)))


def log_id(sessions: sessionmaker[Session]) -> str:
    with transaction(sessions) as s:
        row = s.get(AuditHeadRow, HEAD_ID)
        return "" if row is None else row.log_id


def head(sessions: sessionmaker[Session]) -> tuple[int, Anchor | None]:
    """The size the index claims, and the pruning anchor if the log was pruned."""
    with transaction(sessions) as s:
        row = s.get(AuditHeadRow, HEAD_ID)
        if row is None:
            return 0, None
        anchor = (
            Anchor(row.pruned, tuple(bytes.fromhex(x) for x in row.anchor), row.anchor_last)
            if row.pruned
            else None
        )
        return row.size, anchor


def skip_pruned(entries: Iterator[StoredEntry], anchor: Anchor | None) -> Iterator[StoredEntry]:
    """Kafka may still hold events the index pruned; start at the anchor."""
    if anchor is None:
        yield from entries
        return
    for e in entries:
        try:
            index = int(json.loads(e.entry)["index"])
        except (ValueError, KeyError, TypeError):
            index = anchor.size  # malformed: let the verifier report it
        if index >= anchor.size:
            yield e

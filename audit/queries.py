"""What an officer may ask of the audit index: event filters and activity over time.

Pure query building over the index tables (no HTTP, no session handling); every check of the
officer's input happens here, so the API, the console and the CLI refuse the same things.
A raw data-subject id is turned into its keyed hash before it reaches SQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, case, func, select

from audit.models import AuditEventRow, AuditSubjectRow
from exchange.errors import InvalidInput

OUTCOMES = ("ok", "denied", "error")
# An exact type (``record.published``), a prefix (``schema.*``) or everything (``*``).
_TYPE = re.compile(r"[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*(\.\*)?|\*")
_MAX_TEXT = 300


def utc(dt: datetime) -> datetime:
    """A time without a zone is taken as UTC (never as the server's local time)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def ts_text(dt: datetime) -> str:
    """The index's sortable text form of a time."""
    return utc(dt).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    department: str | None = None
    client: str | None = None
    topic: str | None = None
    type: str | None = None  # exact, or a prefix ending in ".*"
    subject: str | None = None  # raw id: hashed here, never stored or logged
    outcome: str | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and utc(self.since) >= utc(self.until):
            raise InvalidInput("the time range is empty: 'from' must be before 'to'")
        if self.type is not None and not _TYPE.fullmatch(self.type):
            raise InvalidInput(
                "event type must be a dotted name such as record.published, "
                "or a prefix such as schema.*"
            )
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise InvalidInput(f"outcome must be one of {', '.join(OUTCOMES)}")
        for name in ("department", "client", "topic", "type", "subject"):
            value = getattr(self, name)
            if value is not None and not 0 < len(value) <= _MAX_TEXT:
                raise InvalidInput(f"{name} must have 1 to {_MAX_TEXT} characters")


def select_events(f: Filters, hash_subject: Callable[[str], str]) -> Select[AuditEventRow]:
    """Events matching every given filter, in index order."""
    q = select(AuditEventRow).order_by(AuditEventRow.idx)
    if f.since is not None:
        q = q.where(AuditEventRow.ts >= ts_text(f.since))
    if f.until is not None:
        q = q.where(AuditEventRow.ts < ts_text(f.until))
    for column, value in (
        (AuditEventRow.department, f.department),
        (AuditEventRow.actor, f.client),
        (AuditEventRow.topic, f.topic),
        (AuditEventRow.outcome, f.outcome),
    ):
        if value is not None:
            q = q.where(column == value)
    if f.type is not None and f.type != "*":
        if f.type.endswith(".*"):
            prefix = f.type[:-1]  # keeps the dot: "schema." never matches "schemata.x"
            q = q.where(func.substr(AuditEventRow.type, 1, len(prefix)) == prefix)
        else:
            q = q.where(AuditEventRow.type == f.type)
    if f.subject is not None:
        q = q.where(AuditEventRow.idx.in_(subject_indexes(hash_subject(f.subject))))
    return q


def subject_indexes(hashed: str) -> Select[tuple[int]]:
    """The indexes of the events of one (hashed) subject: one index seek per bucket.

    The subject table's key is ``(bucket, subject, idx)`` (see ``audit.models``): a plain
    ``subject = ?`` would scan it, so the buckets in use are walked first (a recursive CTE,
    each step the next bucket above the last, one seek on the key's first column: SQLite and
    PostgreSQL have no skip scan for this) and each bucket is searched on
    ``(bucket, subject)``. Whatever buckets the rows are in, the answer is the same."""
    t, nxt = AuditSubjectRow.__table__.alias("s"), AuditSubjectRow.__table__.alias("n")
    first = select(func.min(t.c.bucket).label("b")).cte("buckets", recursive=True)
    step = select(func.min(nxt.c.bucket)).where(nxt.c.bucket > first.c.b).scalar_subquery()
    buckets = first.union_all(select(step).where(first.c.b.is_not(None)))
    found = AuditSubjectRow.__table__.alias("f")
    return select(found.c.idx).join(
        buckets, (found.c.bucket == buckets.c.b) & (found.c.subject == hashed)
    )


# -- activity over time -------------------------------------------------------------------------

Bucket = Literal["minute", "hour", "day"]
BUCKETS: dict[str, tuple[int, timedelta]] = {  # prefix length of the ts text, step
    "minute": (16, timedelta(minutes=1)),
    "hour": (13, timedelta(hours=1)),
    "day": (10, timedelta(days=1)),
}
MAX_BUCKETS = 2000
MAX_SERIES = 50
OTHER = "(other)"  # the departments beyond MAX_SERIES, summed


@dataclass(frozen=True)
class Window:
    """A time range cut into equal buckets, aligned to the bucket's unit (UTC)."""

    since: datetime
    until: datetime
    bucket: str

    def __post_init__(self) -> None:
        if self.bucket not in BUCKETS:
            raise InvalidInput(f"bucket must be one of {', '.join(BUCKETS)}")
        if utc(self.since) >= utc(self.until):
            raise InvalidInput("the time range is empty: 'from' must be before 'to'")
        if len(self.starts()) > MAX_BUCKETS:
            raise InvalidInput(
                f"the range holds more than {MAX_BUCKETS} {self.bucket}s; use a larger bucket"
            )

    def _floor(self, dt: datetime) -> datetime:
        dt = utc(dt)
        if self.bucket == "day":
            return dt.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.bucket == "hour":
            return dt.replace(minute=0, second=0, microsecond=0)
        return dt.replace(second=0, microsecond=0)

    def starts(self) -> list[datetime]:
        step = BUCKETS[self.bucket][1]
        first, end = self._floor(self.since), utc(self.until)
        count = int((end - first) / step) + 1
        if count > MAX_BUCKETS + 1:  # refuse before building a huge list
            return [first] * (MAX_BUCKETS + 1)
        return [first + i * step for i in range(count) if first + i * step < end]

    def key(self, dt: datetime) -> str:
        return ts_text(dt)[: BUCKETS[self.bucket][0]]


def select_activity(w: Window, department: str | None = None) -> Select[Any]:
    """(bucket key, department, events, denials) rows inside the window."""
    width = BUCKETS[w.bucket][0]
    key = func.substr(AuditEventRow.ts, 1, width)
    denied = func.sum(case((AuditEventRow.outcome == "denied", 1), else_=0))
    q = (
        select(key, AuditEventRow.department, func.count(), denied)
        .where(AuditEventRow.ts >= ts_text(w.since), AuditEventRow.ts < ts_text(w.until))
        .group_by(key, AuditEventRow.department)
    )
    if department is not None:
        q = q.where(AuditEventRow.department == department)
    return q


def activity(w: Window, rows: Iterable[tuple[str, str | None, int, int | None]]) -> dict[str, Any]:
    """Per-department series over every bucket of the window (zeros filled in), busiest first;
    beyond :data:`MAX_SERIES` series the quietest departments are summed as :data:`OTHER`."""
    starts = w.starts()
    slot = {w.key(s): i for i, s in enumerate(starts)}
    per: dict[str | None, tuple[list[int], list[int]]] = {}
    for key, dept, events, denied in rows:
        i = slot.get(key)
        if i is None:
            continue
        ev, dn = per.setdefault(dept, ([0] * len(starts), [0] * len(starts)))
        ev[i] += int(events)
        dn[i] += int(denied or 0)
    ranked = sorted(per.items(), key=lambda kv: (-sum(kv[1][0]), kv[0] or ""))
    if len(ranked) > MAX_SERIES:
        rest = [counts for _, counts in ranked[MAX_SERIES - 1 :]]
        merged = tuple([sum(c[k][i] for c in rest) for i in range(len(starts))] for k in (0, 1))
        ranked = [*ranked[: MAX_SERIES - 1], (OTHER, (merged[0], merged[1]))]
    series: list[dict[str, Any]] = [
        {"department": d, "events": ev, "denied": dn} for d, (ev, dn) in ranked
    ]
    return {
        "from": ts_text(w.since),
        "to": ts_text(w.until),
        "bucket": w.bucket,
        "buckets": [s.strftime("%Y-%m-%dT%H:%M:%SZ") for s in starts],
        "series": series,
        "totals": {
            "events": sum(sum(ev) for _, (ev, _dn) in ranked),
            "denied": sum(sum(dn) for _, (_ev, dn) in ranked),
        },
    }

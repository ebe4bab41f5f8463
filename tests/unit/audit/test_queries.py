"""Officer query input (filters, time windows) and the activity series, without a database
except where the SQL itself is the point (an in-memory SQLite index)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.orm import Session

from audit.models import AuditEventRow, AuditHeadRow, AuditSubjectRow
from audit.queries import (
    MAX_BUCKETS,
    MAX_SERIES,
    OTHER,
    Filters,
    Window,
    activity,
    select_activity,
    select_events,
    subject_indexes,
    ts_text,
)
from audit.store import bucketed
from exchange.db import Base
from exchange.errors import InvalidInput

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"since": T0, "until": T0},
        {"since": T0, "until": T0 - timedelta(seconds=1)},
        {"type": "schema*"},
        {"type": "schema.*.x"},
        {"type": "a b"},
        {"type": ""},
        {"type": "%"},
        {"outcome": "DENIED"},
        {"department": ""},
        {"topic": "x" * 301},
    ],
)
def test_bad_filters_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        Filters(**kwargs)  # type: ignore[arg-type]


def test_naive_times_are_utc_and_offsets_are_honoured() -> None:
    assert ts_text(datetime(2026, 1, 1, 8, 0)) == "2026-01-01T08:00:00.000000Z"
    east8 = timezone(timedelta(hours=8))
    assert ts_text(datetime(2026, 1, 1, 8, 0, tzinfo=east8)) == "2026-01-01T00:00:00.000000Z"


def _db() -> Session:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine, tables=[AuditEventRow.__table__, AuditSubjectRow.__table__])  # type: ignore[list-item]
    s = Session(engine)
    rows = [
        ("schema.registered", "health", "ok", T0),
        ("schema.deleted", "health", "denied", T0 + timedelta(minutes=5)),
        ("schemata.odd", "health", "ok", T0 + timedelta(minutes=6)),
        ("record.published", "tax", "ok", T0 + timedelta(hours=1, minutes=1)),
        ("authz.denied", "tax", "denied", T0 + timedelta(hours=1, minutes=2)),
        ("authz.denied", None, "denied", T0 + timedelta(hours=2)),
    ]
    s.execute(
        insert(AuditEventRow),
        [
            {
                "idx": i,
                "ts": ts_text(ts),
                "type": t,
                "actor": "c",
                "department": d,
                "topic": None,
                "outcome": o,
                "entry": b"{}",
                "leaf_hash": b"",
            }
            for i, (t, d, o, ts) in enumerate(rows)
        ],
    )
    s.execute(insert(AuditSubjectRow), [{"bucket": 0, "subject": "h(x)", "idx": 3}])
    return s


def _idx(s: Session, f: Filters) -> list[int]:
    return [r.idx for r in s.scalars(select_events(f, lambda raw: f"h({raw})"))]


def test_type_prefix_outcome_and_subject_filters() -> None:
    s = _db()
    assert _idx(s, Filters(type="schema.*")) == [0, 1]  # not "schemata.odd"
    assert _idx(s, Filters(type="schema.deleted")) == [1]
    assert _idx(s, Filters(type="*")) == list(range(6))
    assert _idx(s, Filters(outcome="denied")) == [1, 4, 5]
    assert _idx(s, Filters(outcome="denied", department="tax")) == [4]
    assert _idx(s, Filters(subject="x")) == [3]
    assert _idx(s, Filters(subject="y")) == []
    hour2 = Filters(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=2))
    assert _idx(s, hour2) == [3, 4]


def test_subject_search_by_bucket_finds_what_a_plain_subject_filter_finds() -> None:
    """The bucket walk (one seek per bucket) against ``subject = ?`` over the same rows,
    assigned to buckets by the append's own ``bucketed``: events of 0-3 subjects with
    500-subject delivery events among them, over more than a dozen buckets; a subject in
    nearly every bucket, subjects in one or two, a subject in none; then with the first
    buckets pruned away (the walk starts at the lowest bucket left)."""
    rnd = random.Random(11)
    head = AuditHeadRow(subject_bucket=3, subject_rows=0)  # buckets need not start at 0
    people = [f"p{i}" for i in range(40)]
    rows: list[tuple[object, ...]] = []
    for idx in range(4000):
        if idx % 97 == 0:
            subjects = {"everywhere", *(f"d{idx}-{k}" for k in range(499))}
        else:
            subjects = set(rnd.sample(people, rnd.choice((0, 1, 2, 3))))
        rows += ((x, idx) for x in sorted(subjects))
    s = _db()
    s.execute(text("DELETE FROM audit_subjects"))
    bucketed_rows = bucketed(head, rows, per=1000)
    s.execute(
        insert(AuditSubjectRow),
        [{"bucket": b, "subject": x, "idx": i} for b, x, i in bucketed_rows],
    )
    per_bucket: dict[object, int] = {}
    for b, _, _ in bucketed_rows:
        per_bucket[b] = per_bucket.get(b, 0) + 1
    assert len(per_bucket) > 12 and min(per_bucket) == 3
    assert max(per_bucket.values()) < 1000 + 500  # rows, not events, bounded
    assert head.subject_bucket == max(per_bucket)  # type: ignore[type-var]

    def plain(subject: str) -> list[int]:
        q = select(AuditSubjectRow.idx).where(AuditSubjectRow.subject == subject)
        return sorted(s.scalars(q))

    def walked(subject: str) -> list[int]:
        return sorted(s.scalars(subject_indexes(subject)))

    spread = {x: {b for b, y, _ in bucketed_rows if y == x} for x in ("everywhere", "p7", "d97-3")}
    assert len(spread["everywhere"]) >= len(per_bucket) - 1 and len(spread["d97-3"]) == 1
    for subject in ("everywhere", "p7", "p31", "d97-3", "d3880-0", "nobody"):
        assert walked(subject) == plain(subject)
    assert len(walked("everywhere")) == 42 and walked("nobody") == []
    s.execute(text("DELETE FROM audit_subjects WHERE bucket < 6"))
    for subject in ("everywhere", "p7", "nobody"):
        assert walked(subject) == plain(subject)
    s.execute(text("DELETE FROM audit_subjects"))
    assert walked("everywhere") == []  # an empty table: no bucket, no seek


def test_subject_search_is_an_index_seek_per_bucket() -> None:
    s = _db()
    sql = str(
        select_events(Filters(subject="x"), lambda raw: raw).compile(
            s.get_bind(), compile_kwargs={"literal_binds": True}
        )
    )
    plan = [str(r[3]) for r in s.execute(text("EXPLAIN QUERY PLAN " + sql))]
    assert not [p for p in plan if p.startswith("SCAN") and p != "SCAN buckets"]  # no table scan
    assert any("PRIMARY KEY (bucket=? AND subject=?)" in p for p in plan)
    assert any("PRIMARY KEY (bucket>?)" in p for p in plan)


def test_activity_fills_every_bucket_per_department() -> None:
    s = _db()
    w = Window(T0, T0 + timedelta(hours=3), "hour")
    rows = [tuple(r) for r in s.execute(select_activity(w))]
    out = activity(w, rows)  # type: ignore[arg-type]
    assert out["buckets"] == [
        "2026-11-30T10:00:00Z",
        "2026-11-30T11:00:00Z",
        "2026-11-30T12:00:00Z",
    ]
    by = {x["department"]: x for x in out["series"]}
    assert by["health"] == {"department": "health", "events": [3, 0, 0], "denied": [1, 0, 0]}
    assert by["tax"]["events"] == [0, 2, 0] and by["tax"]["denied"] == [0, 1, 0]
    assert by[None]["events"] == [0, 0, 1]
    assert out["totals"] == {"events": 6, "denied": 3}
    assert out["series"][0]["department"] == "health"  # busiest first
    only_tax = [tuple(r) for r in s.execute(select_activity(w, "tax"))]
    assert {x["department"] for x in activity(w, only_tax)["series"]} == {"tax"}  # type: ignore[arg-type]


def test_activity_window_is_bounded_and_ordered() -> None:
    with pytest.raises(InvalidInput):
        Window(T0, T0, "hour")
    with pytest.raises(InvalidInput):
        Window(T0, T0 + timedelta(minutes=MAX_BUCKETS + 5), "minute")
    with pytest.raises(InvalidInput):
        Window(T0, T0 + timedelta(hours=1), "week")
    w = Window(T0 + timedelta(minutes=30), T0 + timedelta(hours=2), "hour")
    assert [s.hour for s in w.starts()] == [10, 11]  # aligned to the hour


def test_activity_sums_the_quietest_departments_beyond_the_cap() -> None:
    w = Window(T0, T0 + timedelta(hours=1), "hour")
    rows = [("2026-11-30T10", f"d{i:03}", i + 1, 0) for i in range(MAX_SERIES + 10)]
    out = activity(w, rows)
    assert len(out["series"]) == MAX_SERIES
    assert out["series"][-1]["department"] == OTHER
    assert out["totals"]["events"] == sum(i + 1 for i in range(MAX_SERIES + 10))

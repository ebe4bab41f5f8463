"""The ``AuditSink`` port's contract, run against every implementation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from audit.factory import open_audit
from audit.service import Filters
from exchange.auditing import AuditRecord, AuditSink, MemoryAuditSink
from exchange.db import make_engine, migrate, session_factory
from exchange.settings import Settings

Reader = Callable[[], list[tuple[str, str]]]


@pytest.fixture(params=["memory", "audit-log"])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[AuditSink, Reader]]:
    if request.param == "memory":
        mem = MemoryAuditSink()
        yield mem, lambda: [(r.type, r.actor) for r in mem.records]
        return
    settings = Settings(home=tmp_path)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    audit = open_audit(settings, session_factory(engine), None)
    yield audit.log, lambda: [(e.type, e.actor) for e in audit.service.query(Filters(), limit=1000)]
    engine.dispose()


def test_appends_keep_order_and_batches_are_whole(sink: tuple[AuditSink, Reader]) -> None:
    s, read = sink
    s.append(AuditRecord("a.one", actor="x"))
    s.append_many([AuditRecord("a.two", actor="y"), AuditRecord("a.three", actor="z")])
    s.append_many([])
    assert read() == [("a.one", "x"), ("a.two", "y"), ("a.three", "z")]


def test_accepts_every_json_safe_payload(sink: tuple[AuditSink, Reader]) -> None:
    s, read = sink
    s.append(
        AuditRecord(
            "a.data",
            actor="x",
            department="d",
            topic="t",
            data={"n": 1, "f": 1.5, "l": [1, "a", None], "nested": {"k": True}},
            subjects=("s1", "s2"),
            outcome="denied",
        )
    )
    assert read() == [("a.data", "x")]

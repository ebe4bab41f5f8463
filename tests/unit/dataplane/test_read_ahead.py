"""Read-ahead of a backlog (dataplane.loop) and the records it opens ahead
(Deliverer.prepare): the same answers and audit events as reading and opening at the
request; nothing audited or delivered ahead; a grant revoked, narrowed or widened or a key
shredded in between, or an audit log down at the request, and the prepared work is not
used (or nothing goes out at all)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from dataplane import loop as loop_module
from dataplane.delivery import Deliverer, Prepared
from dataplane.loop import DeliveryLoop, Step
from dataplane.publish import Batch, NewRecord
from dataplane.readers import ReaderPool
from dataplane.render import Rendered
from dataplane.store import Subscription
from exchange.auditing import AuditRecord, MemoryAuditSink
from exchange.errors import DependencyUnavailable, Forbidden
from exchange.kafka.port import InRecord
from tests.support.scenario import PERSON_SCHEMA, person
from tests.unit.dataplane.world import (
    World,
    build_world,
    consent,
    grant,
    principal,
    subscription,
)

FIELDS = {"name", "citizen_id"}


@pytest.fixture
def w(tmp_path: Path) -> World:
    return build_world(tmp_path)


def _published(w: World, n: int) -> str:
    entry = w.topic(PERSON_SCHEMA)
    records = [NewRecord(f"k{i}", person(i)) for i in range(n)]
    w.publisher.publish(principal("health", "publisher"), entry, Batch(records))
    return entry.topic


def _page(w: World, n: int = 6, *, needs_consent: bool = False) -> tuple[str, list[InRecord]]:
    """A page of ``n`` records and one undecodable one; with ``needs_consent`` every subject
    but the second consented."""
    topic = _published(w, n)
    w.grants.set(grant("civil", topic, FIELDS, consent=needs_consent), "civil", topic)
    for i in range(n) if needs_consent else ():
        if i != 1:
            w.consents.by_subject[person(i)["citizen_id"]] = consent("civil", topic)
    records = w.kafka.read(topic)
    broken = InRecord(topic, 0, 10_000, 0, None, b"\x00garbage", [])
    return topic, [*records[:2], broken, *records[2:]]


def _events(records: Sequence[AuditRecord]) -> list[tuple[Any, ...]]:
    return [(e.type, e.data, e.subjects, e.outcome) for e in records]


def _render(w: World, sub: Subscription, page: list[InRecord], prepared: Prepared | None) -> Any:
    before = len(w.audit.records)
    out = w.deliverer.render(sub, page, client_id="c2", channel="pull", prepared=prepared)
    return out, _events(w.audit.records[before:])


class _CountingOpen:
    """Counts the deliverer's decode-and-open passes (to tell which path a render took)."""

    def __init__(self, d: Deliverer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        inner = d._open_all

        def counted(*a: Any, **k: Any) -> Any:
            self.calls += 1
            return inner(*a, **k)

        monkeypatch.setattr(d, "_open_all", counted)


@pytest.mark.parametrize("needs_consent", [False, True])
def test_a_prepared_page_renders_and_audits_as_the_general_path(
    w: World, needs_consent: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, page = _page(w, needs_consent=needs_consent)
    sub = subscription("civil", topic)
    before = len(w.audit.records)
    prepared = w.deliverer.prepare(sub, page)
    assert prepared is not None
    assert len(w.audit.records) == before  # nothing audited ahead
    opens = _CountingOpen(w.deliverer, monkeypatch)
    fast = _render(w, sub, page, prepared)
    assert opens.calls == 0  # the prepared records were used
    general = _render(w, sub, page, None)
    assert opens.calls == 1
    assert fast == general
    out: Rendered = fast[0]
    assert len(out.records) == (5 if needs_consent else 6)
    assert out.records[0]["value"] == {"name": "Resident 0", "citizen_id": person(0)["citizen_id"]}
    assert [e[0] for e in fast[1]] == ["records.delivered", "records.withheld"]


@pytest.mark.parametrize(
    "change",
    ["revoked", "narrowed", "widened", "shredded", "consent withdrawn"],
)
def test_a_change_between_prepare_and_request_is_what_the_request_sees(
    w: World, change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever changed after the page was opened ahead, the request answers (and audits) as
    if nothing had been prepared: the prepared values are not used where they could differ."""
    topic, page = _page(w, needs_consent=change == "consent withdrawn")
    sub = subscription("civil", topic)
    prepared = w.deliverer.prepare(sub, page)
    if change == "revoked":
        w.grants.set(None, "civil", topic)
    elif change == "narrowed":
        w.grants.set(grant("civil", topic, {"name"}), "civil", topic)
    elif change == "widened":
        w.grants.set(grant("civil", topic, FIELDS | {"phone"}), "civil", topic)
    elif change == "shredded":
        assert w.crypto.keys.shred(topic, "citizen_id") >= 1
    else:
        w.consents.by_subject.pop(person(0)["citizen_id"])
    opens = _CountingOpen(w.deliverer, monkeypatch)
    fast = _render(w, sub, page, prepared)
    reopened = opens.calls
    general = _render(w, sub, page, None)
    assert fast == general
    out: Rendered = fast[0]
    values = [r["value"] for r in out.records]
    if change == "revoked":
        assert values == [] and {x["reason"] for x in out.withheld} >= {"no_agreement"}
        assert [e[0] for e in fast[1]] == ["records.withheld"]
    elif change == "narrowed":
        # What goes out is decided at the request; the subject field is opened either way
        # (consent is looked up by it), so the prepared values may serve.
        assert all(v.keys() == {"name"} for v in values)
    elif change == "widened":
        assert values[0]["phone"] == person(0)["phone"] and reopened == 1
    elif change == "shredded":
        assert all(v["citizen_id"] is None for v in values) and reopened == 1
        assert {r["redacted"]["citizen_id"] for r in out.records} == {"shredded"}
    else:  # consent is decided at the request: no re-opening needed, the record withheld
        assert "Resident 0" not in [v["name"] for v in values] and reopened == 0


def test_an_audit_failure_at_the_request_answers_nothing(w: World) -> None:
    topic, page = _page(w)
    sub = subscription("civil", topic)
    prepared = w.deliverer.prepare(sub, page)
    w.deliverer.audit = down = _DownAudit()
    with pytest.raises(DependencyUnavailable):
        w.deliverer.render(sub, page, client_id="c2", channel="pull", prepared=prepared)
    assert down.records == []


class _DownAudit(MemoryAuditSink):
    def append_many(self, records: Sequence[AuditRecord]) -> None:
        raise DependencyUnavailable("audit log unavailable")


# -- the loop ------------------------------------------------------------------------------


class _CountingDeliverer(Deliverer):
    prepared = 0
    used = 0

    def prepare(self, sub: Subscription, records: list[InRecord]) -> Prepared | None:
        self.prepared += 1
        return super().prepare(sub, records)

    def _still_opens(self, prepared: Prepared, *a: Any) -> bool:
        ok = super()._still_opens(prepared, *a)
        self.used += ok
        return ok


def _loop(w: World) -> tuple[DeliveryLoop, _CountingDeliverer]:
    d = _CountingDeliverer(
        catalog=w.catalog,
        grants=w.grants,
        consents=w.consents,
        schemas=w.registry,
        sealer=w.crypto,
        audit=w.audit,
        clock=w.deliverer.clock,
    )
    return DeliveryLoop(d, ReaderPool(w.kafka)), d  # type: ignore[arg-type]


async def _pages(lp: DeliveryLoop, sub: Subscription, n: int, size: int) -> list[Step]:
    """Steps from the start as a pulling client takes them (cursor = last next_offsets),
    letting each read-ahead finish before the next step (as a client's think time does)."""
    steps: list[Step] = []
    start: dict[int, int] = {}
    for _ in range(n):
        step = await lp.step(sub, "c2", "pull", start, max_records=size, wait_ms=0)
        steps.append(step)
        start = step.next_offsets
        ahead = lp._ahead.get(sub.id)
        if ahead is not None:
            await asyncio.wrap_future(ahead.work)
    return steps


def test_a_backlog_is_read_ahead_and_pulled_as_without_it(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = _published(w, 10)
    w.grants.set(grant("civil", topic, FIELDS), "civil", topic)
    sub = subscription("civil", topic)
    lp, d = _loop(w)
    steps = asyncio.run(_pages(lp, sub, 3, 4))
    events = _events([e for e in w.audit.records if e.type.startswith("records.")])
    # Read ahead after each full page; the second read-ahead found a short page (8, 9),
    # which is not opened ahead (a short page may predate later commits): read again.
    assert d.prepared == d.used == 1
    monkeypatch.setattr(loop_module, "AHEAD_MAX", 0)  # no read-ahead: the general path
    w.audit.records.clear()
    lp2, d2 = _loop(w)
    monkeypatch.setattr(lp2, "_read_ahead", lambda *a: None)
    plain = asyncio.run(_pages(lp2, sub, 3, 4))
    assert d2.prepared == 0
    assert [s.rendered for s in steps] == [s.rendered for s in plain]
    assert (
        [s.next_offsets for s in steps]
        == [s.next_offsets for s in plain]
        == [
            {0: 4},
            {0: 8},
            {0: 10},
        ]
    )
    assert _events([e for e in w.audit.records if e.type.startswith("records.")]) == events
    offsets = [r["offset"] for s in steps for r in s.rendered.records]
    assert offsets == list(range(10))  # none skipped, none repeated


def test_a_read_ahead_is_only_used_from_its_own_position(w: World) -> None:
    """A replay (another cursor) reads from where it asks, and nothing read ahead is
    audited: only the pages answered are."""
    topic = _published(w, 8)
    w.grants.set(grant("civil", topic, FIELDS), "civil", topic)
    sub = subscription("civil", topic)
    lp, _ = _loop(w)

    async def run() -> tuple[Step, Step]:
        first = await lp.step(sub, "c2", "pull", {}, max_records=4, wait_ms=0)
        await asyncio.wrap_future(lp._ahead[sub.id].work)
        again = await lp.step(sub, "c2", "pull", {0: 1}, max_records=4, wait_ms=0)
        return first, again

    _, again = asyncio.run(run())
    assert [r["offset"] for r in again.rendered.records] == [1, 2, 3, 4]
    delivered = [e for e in w.audit.records if e.type == "records.delivered"]
    assert [e.data["offsets"] for e in delivered] == [{"0": [0, 3]}, {"0": [1, 4]}]


@pytest.mark.parametrize("fault", ["revoked", "audit down"])
def test_a_fault_after_the_read_ahead_delivers_nothing_of_it(w: World, fault: str) -> None:
    topic = _published(w, 8)
    w.grants.set(grant("civil", topic, FIELDS), "civil", topic)
    sub = subscription("civil", topic)
    lp, d = _loop(w)

    async def run() -> Step:
        first = await lp.step(sub, "c2", "pull", {}, max_records=4, wait_ms=0)
        await asyncio.wrap_future(lp._ahead[sub.id].work)
        if fault == "revoked":
            w.grants.set(None, "civil", topic)
        else:
            d.audit = _DownAudit()
        return await lp.step(sub, "c2", "pull", first.next_offsets, max_records=4, wait_ms=0)

    expected = Forbidden if fault == "revoked" else DependencyUnavailable
    with pytest.raises(expected):
        asyncio.run(run())
    delivered = [e for e in w.audit.records if e.type == "records.delivered"]
    assert [e.data["offsets"] for e in delivered] == [{"0": [0, 3]}]
    if fault == "revoked":
        assert w.audit.records[-1].type == "delivery.denied"
        assert sub.id not in lp._ahead  # what was opened ahead is dropped with the refusal


def test_a_read_ahead_not_ready_in_time_backs_off(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-ahead not ready when its step comes (a busy machine) makes the subscription
    skip the next full page(s) before reading ahead again; the pages are the same."""
    topic = _published(w, 24)
    w.grants.set(grant("civil", topic, FIELDS), "civil", topic)
    sub = subscription("civil", topic)
    lp, _ = _loop(w)
    inner = lp._read_and_prepare

    def slow(*a: Any) -> Any:
        time.sleep(0.2)  # not ready when the client asks right away
        return inner(*a)

    monkeypatch.setattr(lp, "_read_and_prepare", slow)

    async def run() -> tuple[list[int], list[Any]]:
        offsets: list[int] = []
        ahead: list[Any] = []  # where each step had the next page read ahead from
        start: dict[int, int] = {}
        for _ in range(6):  # no think time: each step asks at once
            step = await lp.step(sub, "c2", "pull", start, max_records=4, wait_ms=0)
            offsets += [r["offset"] for r in step.rendered.records]
            start = step.next_offsets
            a = lp._ahead.get(sub.id)
            ahead.append(None if a is None else a.key[0])
        return offsets, ahead

    offsets, ahead = asyncio.run(run())
    assert offsets == list(range(24))
    # from 4 (late) → 1 page skipped → from 12 (late) → 2 skipped → from 24
    assert ahead == [((0, 4),), None, ((0, 12),), None, None, ((0, 24),)]

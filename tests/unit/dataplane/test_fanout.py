"""Live fan-out without a broker or a web server: a group renders and audits each batch once
for all its members, wakes idle members only when their re-check is due, keeps the grant
fresh ahead of their re-checks; many streams re-checking a stale grant cause one refresh,
and a refusal is still decided and audited per stream."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from consent.domain import Grant
from dataplane.delivery import Deliverer
from dataplane.fanout import TICK_S, GroupRegistry, LiveBatch, Member
from dataplane.hub import HubRegistry
from dataplane.loop import DeliveryLoop
from dataplane.publish import Batch, NewRecord
from dataplane.readers import ReaderPool
from exchange.errors import Forbidden
from tests.support.scenario import PERSON_SCHEMA, person
from tests.unit.dataplane.world import (
    NOW,
    World,
    build_world,
    grant,
    principal,
    subscription,
)


@pytest.fixture
def w(tmp_path: Path) -> World:
    return build_world(tmp_path)


class CountingGrants:
    """The world's grants, counting reads; each read takes ``delay_s`` (a slow database)."""

    def __init__(self, w: World, delay_s: float = 0.0) -> None:
        self.inner, self.delay_s, self.reads = w.grants, delay_s, 0
        self._lock = threading.Lock()

    def current_grant(self, consumer_dept: str, topic: str, now: datetime) -> Grant | None:
        with self._lock:
            self.reads += 1
        time.sleep(self.delay_s)
        return self.inner.current_grant(consumer_dept, topic, now)

    def on_change(self, listener: Callable[[str, str], None]) -> None:
        self.inner.on_change(listener)


def _counting(w: World, delay_s: float = 0.0) -> tuple[Deliverer, CountingGrants]:
    grants = CountingGrants(w, delay_s)
    deliverer = Deliverer(
        catalog=w.catalog,
        grants=grants,
        consents=w.consents,
        schemas=w.registry,
        sealer=w.crypto,
        audit=w.audit,
        clock=lambda: NOW,
    )
    return deliverer, grants


def _topic(w: World) -> str:
    entry = w.topic(PERSON_SCHEMA)
    w.grants.set(grant("civil", entry.topic, {"name"}), "civil", entry.topic)
    return entry.topic


def _publish(w: World, topic: str, n: int) -> None:
    entry = w.catalog.get(topic)
    batch = Batch([NewRecord(f"k{i}", person(i)) for i in range(n)])
    w.publisher.publish(principal("health", "publisher"), entry, batch)


def test_many_streams_rechecking_a_stale_grant_cause_one_read(w: World) -> None:
    topic = _topic(w)
    deliverer, counting = _counting(w, delay_s=0.05)
    loop = DeliveryLoop(deliverer, ReaderPool(w.kafka))
    subs = [replace(subscription("civil", topic), id=f"sub-{i}") for i in range(50)]

    async def all_check() -> list[BaseException | None]:
        return await asyncio.gather(*(loop.check(s, "c2") for s in subs), return_exceptions=True)

    assert asyncio.run(all_check()) == [None] * 50
    assert counting.reads == 1  # one refresh for 50 streams of one (department, topic, fields)
    w.grants.set(None, "civil", topic)  # revoked: the cache is dropped
    denied_before = sum(r.type == "delivery.denied" for r in w.audit.records)
    results = asyncio.run(all_check())
    assert all(isinstance(r, Forbidden) for r in results)
    assert counting.reads == 2
    # Every stream is refused, and each refusal is audited on its own.
    denied = [r for r in w.audit.records if r.type == "delivery.denied"][denied_before:]
    assert sorted(r.data["subscription"] for r in denied) == sorted(s.id for s in subs)


def test_a_fresh_cached_yes_needs_no_read(w: World) -> None:
    topic = _topic(w)
    sub = subscription("civil", topic)
    deliverer, counting = _counting(w)
    deliverer.ensure_allowed(sub, "c2")
    asyncio.run(DeliveryLoop(deliverer, ReaderPool(w.kafka)).check(sub, "c2"))
    assert counting.reads == 1  # the first check only


def test_a_group_renders_and_audits_each_batch_once_for_all_members(w: World) -> None:
    topic = _topic(w)
    hubs = HubRegistry(w.kafka)
    subs = [replace(subscription("civil", topic), id=f"sub-{i}") for i in range(3)]

    async def main() -> list[list[LiveBatch | None]]:
        groups = GroupRegistry(hubs, w.deliverer)
        joined = [await groups.join(s, "c2") for s in subs]
        assert len({id(g) for g, _, _ in joined}) == 1  # one group for one view
        await asyncio.to_thread(_publish, w, topic, 4)
        got: list[list[LiveBatch | None]] = []
        for group, member, _ in joined:
            got.append(await _next_batches(member, 4))
            group.leave(member)
        return got

    try:
        got = asyncio.run(main())
    finally:
        hubs.close()
    first = got[0]
    assert all(g == first for g in got)  # the same rendered batches, shared
    assert [r.offset for b in first if b for r in b.records] == [0, 1, 2, 3]
    delivered = [r for r in w.audit.records if r.type == "records.delivered"]
    assert len(delivered) == sum(1 for b in first if b)  # one event per batch, not per stream
    assert all(r.data["subscription"] == [s.id for s in subs] for r in delivered)


async def _next_batches(member: Member, records: int) -> list[LiveBatch | None]:
    """What the member's queue holds until ``records`` records arrived (ticks dropped)."""
    out: list[LiveBatch | None] = []
    while sum(len(b.records) for b in out if b) < records:
        item = await asyncio.wait_for(member.queue.get(), timeout=10)
        if item is not None:
            out.append(item)
    return out


def test_an_idle_member_is_woken_when_its_recheck_is_due_and_not_before(w: World) -> None:
    topic = _topic(w)
    hubs = HubRegistry(w.kafka)

    async def main() -> tuple[float, float]:
        groups = GroupRegistry(hubs, w.deliverer)
        group, member, _ = await groups.join(subscription("civil", topic), "c2")
        while not member.queue.empty():  # a new member is due at once
            member.queue.get_nowait()
        t0 = time.monotonic()
        member.due = t0 + 0.5
        tick = await asyncio.wait_for(member.queue.get(), timeout=10)
        woke = time.monotonic() - t0
        assert tick is None  # a tick, not a batch
        assert member.queue.empty()  # one tick, however many ticker rounds passed
        group.leave(member)
        return woke, group.ticker.cancelled() or group.ticker.done()

    try:
        woke, _ = asyncio.run(main())
    finally:
        hubs.close()
    assert woke >= 0.5 - TICK_S / 10  # not before it was due


def test_dropping_members_wakes_the_waiting_ones(w: World) -> None:
    topic = _topic(w)
    hubs = HubRegistry(w.kafka)

    async def main() -> None:
        groups = GroupRegistry(hubs, w.deliverer)
        group, member, _ = await groups.join(subscription("civil", topic), "c2")
        member.due = time.monotonic() + 3600  # no tick would come
        while not member.queue.empty():
            member.queue.get_nowait()
        waiting = asyncio.ensure_future(member.queue.get())
        await asyncio.sleep(0)
        group._drop_members()  # the group fell behind (or its render failed)
        assert await asyncio.wait_for(waiting, timeout=10) is None
        assert member.overflowed  # the member leaves to catch up on its own
        group.leave(member)

    try:
        asyncio.run(main())
    finally:
        hubs.close()


def test_a_group_keeps_the_grant_fresh_for_its_members(w: World) -> None:
    topic = _topic(w)
    sub = subscription("civil", topic)
    deliverer, counting = _counting(w)
    deliverer.ensure_allowed(sub, "c2")
    hubs = HubRegistry(w.kafka)

    async def main() -> None:
        groups = GroupRegistry(hubs, deliverer)
        group, member, _ = await groups.join(sub, "c2")
        await asyncio.sleep(2.0)  # no member asks; the group re-reads ahead of expiry
        assert deliverer.allowed_now(sub) is True
        group.leave(member)

    try:
        asyncio.run(main())
    finally:
        hubs.close()
    assert counting.reads >= 3  # the first check, then at least every GRANT_TTL_S


def test_groups_of_many_clients_with_one_view_share_the_grant_re_read(w: World) -> None:
    topic = _topic(w)
    deliverer, counting = _counting(w)
    one = subscription("civil", topic)
    other = replace(one, id="sub-2", client_id="c3")  # another client, the same view
    deliverer.ensure_allowed(one, "c2")
    hubs = HubRegistry(w.kafka)

    async def main() -> None:
        groups = GroupRegistry(hubs, deliverer)
        await asyncio.sleep(0.6)  # the cached grant is now older than REFRESH_AHEAD_S
        now = time.monotonic()
        groups.refresh_ahead(one, now)
        groups.refresh_ahead(other, now)
        await asyncio.gather(*list(groups._refreshing))

    try:
        asyncio.run(main())
    finally:
        hubs.close()
    assert counting.reads == 2  # the first check, then one re-read for both clients' groups
    assert deliverer.allowed_now(other) is True

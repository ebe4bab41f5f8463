"""Shared live rendering for streams that would receive the same thing.

Streams of one client on one topic with the same field selection see identical output, so
one *group* renders (policy, decryption) and audits each live batch once — the audit event
lists every member subscription — and hands the result to all members. With 1,639 streams
this is the difference between one render per batch and 1,639.

Joining is race-free because everything below runs on the event loop: a member learns the
position from which the group will push to it (``live_from``) and catches up to it on its own.

A member waits on its queue with no timer of its own: the group's ticker puts a ``None`` (a
tick) in the queue of each idle member whose re-check is due (``Member.due``), so 1,639
waiting streams cost one loop over the members every ``TICK_S``, not 1,639 timers set and
cancelled for every batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from dataplane.cursor import Offsets
from dataplane.delivery import GRANT_TTL_S, Deliverer
from dataplane.hub import HubRegistry
from dataplane.store import Subscription
from exchange.errors import ExchangeError
from exchange.kafka.port import InRecord

log = logging.getLogger(__name__)
GroupKey = tuple[str, str, str, frozenset[str] | None]
TICK_S = 0.1  # how late past its due time a waiting member is woken at most
# The group re-reads its grant ahead of the cache's expiry (GRANT_TTL_S), so its members'
# once-a-second re-checks find a fresh answer instead of all waiting on one refresh.
REFRESH_AHEAD_S = GRANT_TTL_S / 2


@dataclass(frozen=True)
class LiveBatch:
    records: list[InRecord]
    items: dict[tuple[int, int], str]  # (partition, offset) → rendered record as JSON


@dataclass(eq=False)
class Member:
    """One stream in a group: live batches, or ``None`` (a tick: time to re-check), queued."""

    sub_id: str
    queue: asyncio.Queue[LiveBatch | None] = field(default_factory=lambda: asyncio.Queue(256))
    overflowed: bool = False
    due: float = 0.0  # monotonic time by which the stream wants a wake-up even if idle

    def offer(self, batch: LiveBatch) -> None:
        try:
            self.queue.put_nowait(batch)
        except asyncio.QueueFull:
            self.overflowed = True

    def wake(self) -> None:
        """A tick, unless something is queued already (then the stream wakes anyway)."""
        if self.queue.empty():
            self.queue.put_nowait(None)


class Group:
    def __init__(
        self, registry: GroupRegistry, key: GroupKey, sub: Subscription, client_id: str, hub: Any
    ) -> None:
        self.registry, self.key, self.sub, self.client_id, self.hub = (
            registry,
            key,
            sub,
            client_id,
            hub,
        )
        self.feed, self.position = hub.subscribe()
        self.inflight_end: Offsets | None = None
        self.members: dict[Member, None] = {}
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self._run())
        self.ticker = loop.create_task(self._tick())

    def join(self, sub_id: str) -> tuple[Member, Offsets]:
        member = Member(sub_id, due=time.monotonic())
        self.members[member] = None
        return member, dict(self.inflight_end or self.position)

    def leave(self, member: Member) -> None:
        self.members.pop(member, None)
        if not self.members:
            self.task.cancel()
            self.ticker.cancel()
            self.hub.unsubscribe(self.feed)
            self.registry.groups.pop(self.key, None)

    async def _run(self) -> None:
        deliverer = self.registry.deliverer
        while True:
            batch = list(await self.feed.queue.get())
            while not self.feed.queue.empty():
                batch.extend(self.feed.queue.get_nowait())
            if self.feed.overflowed:  # the group itself fell behind: members catch up alone
                self._drop_members()
                self.hub.unsubscribe(self.feed)
                self.feed, self.position = self.hub.subscribe()
                continue
            end = dict(self.position)
            for r in batch:
                end[r.partition] = max(end.get(r.partition, 0), r.offset + 1)
            self.inflight_end = end
            members = list(self.members)
            try:
                rendered = await asyncio.to_thread(
                    deliverer.render,
                    self.sub,
                    batch,
                    client_id=self.client_id,
                    channel="sse",
                    subscriptions=[m.sub_id for m in members],
                )
            except ExchangeError as exc:
                # Members re-check access and catch up on their own (and say why).
                log.info("group render for %s failed: %s", self.key[2], exc.code)
                self._drop_members()
                members = []
                rendered = None
            if rendered is not None:
                # Serialised once for all members, not once per stream.
                live = LiveBatch(
                    batch, {(r["partition"], r["offset"]): _json(r) for r in rendered.records}
                )
                for m in members:
                    if m in self.members:
                        m.offer(live)
            self.position, self.inflight_end = end, None

    def _drop_members(self) -> None:
        for m in list(self.members):
            m.overflowed = True
            m.wake()  # a waiting member leaves at once to catch up on its own

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            self.registry.refresh_ahead(self.sub, now)
            for m in list(self.members):
                if m.due <= now:
                    m.wake()


def _json(item: dict[str, Any]) -> str:
    return json.dumps(item, separators=(",", ":"))


class GroupRegistry:
    def __init__(self, hubs: HubRegistry, deliverer: Deliverer) -> None:
        self.hubs = hubs
        self.deliverer = deliverer
        self.groups: dict[GroupKey, Group] = {}
        # Per verdict (department, topic, fields), not per group: the groups of many clients
        # with the same view share one re-read.
        self._refreshed: dict[tuple[str, str, frozenset[str] | None], float] = {}
        self._refreshing: set[asyncio.Future[None]] = set()

    def refresh_ahead(self, sub: Subscription, now: float) -> None:
        """Re-read ``sub``'s grant in a worker thread if it is older than REFRESH_AHEAD_S
        (asked every REFRESH_AHEAD_S / 2 at most)."""
        key = (sub.consumer, sub.topic, sub.fields)
        if now - self._refreshed.get(key, 0.0) < REFRESH_AHEAD_S / 2:
            return
        self._refreshed[key] = now
        task = asyncio.ensure_future(asyncio.to_thread(self._refresh, sub))
        self._refreshing.add(task)  # a reference until done: the loop keeps only a weak one
        task.add_done_callback(self._refreshing.discard)

    def _refresh(self, sub: Subscription) -> None:
        """A failure here changes nothing: each member still re-checks, and fails closed,
        on its own."""
        try:
            self.deliverer.verdict(sub, max_age=REFRESH_AHEAD_S)
        except Exception as exc:
            log.info("grant refresh for %s failed: %s", sub.topic, type(exc).__name__)

    async def join(self, sub: Subscription, client_id: str) -> tuple[Group, Member, Offsets]:
        key: GroupKey = (sub.consumer, client_id, sub.topic, sub.fields)
        group = self.groups.get(key)
        if group is None:
            hub = await asyncio.to_thread(self.hubs.get, sub.topic, asyncio.get_running_loop())
            group = self.groups.get(key)  # another stream may have created it meanwhile
            if group is None:
                group = self.groups[key] = Group(self, key, sub, client_id, hub)
        member, live_from = group.join(sub.id)
        return group, member, live_from

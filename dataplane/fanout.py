"""Shared live rendering for streams that would receive the same thing.

Streams of one client on one topic with the same field selection see identical output, so
one *group* renders (policy, decryption) and audits each live batch once — the audit event
lists every member subscription — and hands the result to all members. With 1,639 streams
this is the difference between one render per batch and 1,639.

Joining is race-free because everything below runs on the event loop: a member learns the
position from which the group will push to it (``live_from``) and catches up to it on its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from dataplane.cursor import Offsets
from dataplane.delivery import Deliverer
from dataplane.hub import HubRegistry
from dataplane.store import Subscription
from exchange.errors import ExchangeError
from exchange.kafka.port import InRecord

log = logging.getLogger(__name__)
GroupKey = tuple[str, str, str, frozenset[str] | None]


@dataclass(frozen=True)
class LiveBatch:
    records: list[InRecord]
    items: dict[tuple[int, int], str]  # (partition, offset) → rendered record as JSON


@dataclass(eq=False)
class Member:
    sub_id: str
    queue: asyncio.Queue[LiveBatch] = field(default_factory=lambda: asyncio.Queue(256))
    overflowed: bool = False

    def offer(self, batch: LiveBatch) -> None:
        try:
            self.queue.put_nowait(batch)
        except asyncio.QueueFull:
            self.overflowed = True


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
        self.task = asyncio.get_running_loop().create_task(self._run())

    def join(self, sub_id: str) -> tuple[Member, Offsets]:
        member = Member(sub_id)
        self.members[member] = None
        return member, dict(self.inflight_end or self.position)

    def leave(self, member: Member) -> None:
        self.members.pop(member, None)
        if not self.members:
            self.task.cancel()
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


def _json(item: dict[str, Any]) -> str:
    return json.dumps(item, separators=(",", ":"))


class GroupRegistry:
    def __init__(self, hubs: HubRegistry, deliverer: Deliverer) -> None:
        self.hubs = hubs
        self.deliverer = deliverer
        self.groups: dict[GroupKey, Group] = {}

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

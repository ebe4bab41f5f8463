"""The one delivery loop: check access → read → render, shared by pull, SSE and webhooks.

Each channel decides only what to do with a step's result (answer a long-poll, emit events,
POST a signed page) and how it encodes the cursor. Blocking work (the control plane, Kafka,
the KMS) runs in worker threads so the event loop stays free for thousands of streams.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from dataplane.cursor import Offsets
from dataplane.delivery import Deliverer
from dataplane.readers import ReaderPool
from dataplane.render import Rendered
from dataplane.store import Subscription
from exchange import metrics, tracing
from exchange.errors import ExchangeError
from exchange.kafka.port import InRecord

RECHECK_S = 1.0  # how often a waiting reader re-checks its agreement (revocation ≤ 2 s)
LAG_EVERY_S = 5.0  # how often a subscription's lag in records is measured (a Kafka call)


@dataclass(frozen=True)
class Step:
    records: list[InRecord]  # as read from Kafka, in order
    rendered: Rendered  # what this subscription receives of them
    next_offsets: Offsets  # where the next step starts


CheckKey = tuple[int, str, str, frozenset[str] | None]  # (event loop, dept, topic, fields)


class DeliveryLoop:
    def __init__(self, deliverer: Deliverer, readers: ReaderPool) -> None:
        self.deliverer = deliverer
        self.readers = readers
        self._lag_measured: dict[str, float] = {}  # subscription -> monotonic time
        self._refreshing: dict[CheckKey, asyncio.Future[bool]] = {}

    async def check(self, sub: Subscription, client_id: str) -> None:
        """Raise :class:`~exchange.errors.Forbidden` (audited) unless the agreement still
        allows ``sub``. A fresh cached "yes" costs nothing; when it is stale, one refresh per
        (department, topic, fields) runs at a time however many streams ask — 1,639 streams
        re-checking every second all found the cache stale at once and each took a worker
        thread and the grant queries. A refusal is still decided and audited per stream."""
        verdict = self.deliverer.allowed_now(sub)
        if verdict:
            return
        if verdict is None:
            loop = asyncio.get_running_loop()
            key: CheckKey = (id(loop), sub.consumer, sub.topic, sub.fields)
            pending = self._refreshing.get(key)
            if pending is None:
                pending = loop.create_task(asyncio.to_thread(self.deliverer.verdict, sub))
                self._refreshing[key] = pending
                pending.add_done_callback(lambda _: self._refreshing.pop(key, None))
            # Shielded: one stream going away must not cancel the others' refresh.
            verdict = await asyncio.shield(pending)
            if verdict:
                return
        await asyncio.to_thread(self.deliverer.ensure_allowed, sub, client_id)

    async def step(
        self,
        sub: Subscription,
        client_id: str,
        channel: str,
        start: Offsets,
        *,
        max_records: int,
        wait_ms: int,
        until: Offsets | None = None,
    ) -> Step:
        """One turn: refuse unless the agreement still allows the subscription, read what is
        committed from ``start`` (waiting up to ``wait_ms``), render and audit it."""
        await self.check(sub, client_id)
        with tracing.span("delivery.read", topic=sub.topic, channel=channel):
            page = await asyncio.to_thread(
                self.readers.read,
                sub.topic,
                start,
                max_records=max_records,
                wait_ms=wait_ms,
                until=until,
            )
        rendered = Rendered()
        if page.records:
            with tracing.span("delivery.render", topic=sub.topic, records=len(page.records)):
                rendered = await asyncio.to_thread(
                    self.deliverer.render, sub, page.records, client_id=client_id, channel=channel
                )
            await self._observe(sub, page.records, page.next_offsets, len(rendered.records))
        return Step(page.records, rendered, page.next_offsets)

    async def _observe(
        self, sub: Subscription, records: list[InRecord], nxt: Offsets, delivered: int
    ) -> None:
        """Delivery metrics: records delivered, the newest one's age, and (every few
        seconds) how many records the subscription is behind the topic's end."""
        metrics.DELIVERED_RECORDS.labels(sub.id).inc(delivered)
        newest = max(r.timestamp_ms for r in records) / 1000
        metrics.DELIVERY_LAG_SECONDS.labels(sub.id).set(max(0.0, time.time() - newest))
        now = time.monotonic()
        if now - self._lag_measured.get(sub.id, 0.0) < LAG_EVERY_S:
            return
        self._lag_measured[sub.id] = now
        try:
            ends = await asyncio.to_thread(self.readers.ends_off_readers, sub.topic)
        except ExchangeError:
            return  # a metric is not worth failing a delivery for
        behind = sum(max(0, end - nxt.get(p, 0)) for p, end in ends.items())
        metrics.DELIVERY_LAG_RECORDS.labels(sub.id).set(behind)

    async def long_poll(
        self,
        sub: Subscription,
        client_id: str,
        channel: str,
        start: Offsets,
        *,
        max_records: int,
        wait_ms: int,
    ) -> Step:
        """Steps of at most RECHECK_S until records arrive or ``wait_ms`` has passed, so a
        revocation ends a waiting long-poll within about a second."""
        deadline = time.monotonic() + wait_ms / 1000
        while True:
            chunk = int(min(RECHECK_S, max(0.0, deadline - time.monotonic())) * 1000)
            step = await self.step(
                sub, client_id, channel, start, max_records=max_records, wait_ms=chunk
            )
            if step.records or time.monotonic() >= deadline:
                return step
            start = step.next_offsets

"""The one delivery loop: check access → read → render, shared by pull, SSE and webhooks.

Each channel decides only what to do with a step's result (answer a long-poll, emit events,
POST a signed page) and how it encodes the cursor. Blocking work (the control plane, Kafka,
the KMS) runs in worker threads so the event loop stays free for thousands of streams.

**Read-ahead.** A step that filled its page (a backlog) reads the next page from where it
ends and decodes and opens it (:meth:`Deliverer.prepare`) in the background while the
client handles this one (parses it, commits the cursor, asks again). The next step of that
subscription from exactly that position, for as many records, takes it instead of reading:
only a full page (a short one may predate later commits), and only while the grant would
open it the same way and no data key was taken out since; everything else — the decision of
what goes out, withholding, the audit events — is made at that request as always. Nothing is
delivered or audited ahead: a read-ahead nobody asks for is dropped.

A read-ahead still under way when its step comes gained little and cost CPU that the
machine lacked (the gateway's Python work is serialised by the GIL, and a busy machine has
no second core to spare): the subscription then skips the next 1, 2, 4 … 16 full pages
before trying again, and is back to reading ahead as soon as one is ready in time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from dataplane.cursor import Offsets
from dataplane.delivery import Deliverer, Prepared
from dataplane.readers import Page, ReaderPool
from dataplane.render import Rendered
from dataplane.store import Subscription
from exchange import metrics, tracing
from exchange.errors import ExchangeError
from exchange.kafka.port import InRecord

log = logging.getLogger(__name__)

RECHECK_S = 1.0  # how often a waiting reader re-checks its agreement (revocation ≤ 2 s)
LAG_EVERY_S = 5.0  # how often a subscription's lag in records is measured (a Kafka call)
AHEAD_MAX = 32  # read-aheads held at once (one per subscription), oldest dropped first
AHEAD_TTL_S = 10.0  # a read-ahead not asked for within this long is dropped
AHEAD_WORKERS = 2
AHEAD_WAIT_MS = 100  # a read-ahead waits this long for records at most (it wants a full page)
AHEAD_BACKOFF_MAX = 16  # full pages skipped at most after a read-ahead was not ready in time


@dataclass(frozen=True)
class Step:
    records: list[InRecord]  # as read from Kafka, in order
    rendered: Rendered  # what this subscription receives of them
    next_offsets: Offsets  # where the next step starts


CheckKey = tuple[int, str, str, frozenset[str] | None]  # (event loop, dept, topic, fields)
AheadKey = tuple[tuple[tuple[int, int], ...], int, tuple[tuple[int, int], ...] | None]


@dataclass(frozen=True)
class _Ahead:
    key: AheadKey  # (start, max records, until) of the step it is for
    work: Future[tuple[Page, Prepared | None]]
    at: float  # monotonic time it was started


def _ahead_key(start: Offsets, max_records: int, until: Offsets | None) -> AheadKey:
    return (
        tuple(sorted(start.items())),
        max_records,
        None if until is None else tuple(sorted(until.items())),
    )


class DeliveryLoop:
    def __init__(self, deliverer: Deliverer, readers: ReaderPool) -> None:
        self.deliverer = deliverer
        self.readers = readers
        self._lag_measured: dict[str, float] = {}  # subscription -> monotonic time
        self._refreshing: dict[CheckKey, asyncio.Future[bool]] = {}
        self._ahead: dict[str, _Ahead] = {}  # subscription id -> its read-ahead
        self._ahead_lock = threading.Lock()
        self._ahead_pool: ThreadPoolExecutor | None = None
        # subscription -> (full pages still to skip, pages to skip after the next late one)
        self._backoff: dict[str, tuple[int, int]] = {}

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
        try:
            await self.check(sub, client_id)
        except BaseException:  # refused (or gone): what was opened ahead is not kept
            with self._ahead_lock:
                dropped = self._ahead.pop(sub.id, None)
            if dropped is not None:
                dropped.work.cancel()
            raise
        page, prepared = await self._taken(sub, start, max_records, until)
        if page is None:
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
                    self.deliverer.render,
                    sub,
                    page.records,
                    client_id=client_id,
                    channel=channel,
                    prepared=prepared,
                )
            if len(page.records) >= max_records:  # a backlog: read the next page meanwhile
                self._read_ahead(sub, page.next_offsets, max_records, until)
            await self._observe(sub, page.records, page.next_offsets, len(rendered.records))
        return Step(page.records, rendered, page.next_offsets)

    # -- read-ahead ------------------------------------------------------------------------
    def _read_ahead(
        self, sub: Subscription, start: Offsets, max_records: int, until: Offsets | None
    ) -> None:
        """Start reading, decoding and opening ``sub``'s page from ``start`` in the
        background (module docstring); replaces the subscription's previous read-ahead."""
        if until is not None and all(start.get(p, 0) >= o for p, o in until.items()):
            return  # caught up to where the live feed starts: no next page to read
        skip, after = self._backoff.get(sub.id, (0, 1))
        if skip > 0:
            self._backoff[sub.id] = (skip - 1, after)
            return
        if self._ahead_pool is None:
            self._ahead_pool = ThreadPoolExecutor(AHEAD_WORKERS, thread_name_prefix="read-ahead")
        work = self._ahead_pool.submit(self._read_and_prepare, sub, dict(start), max_records, until)
        dropped: list[_Ahead] = []
        now = time.monotonic()
        with self._ahead_lock:
            old = self._ahead.pop(sub.id, None)
            if old is not None:
                dropped.append(old)
            for sid in [s for s, a in self._ahead.items() if now - a.at > AHEAD_TTL_S]:
                dropped.append(self._ahead.pop(sid))
            while len(self._ahead) >= AHEAD_MAX:
                dropped.append(self._ahead.pop(next(iter(self._ahead))))
            self._ahead[sub.id] = _Ahead(_ahead_key(start, max_records, until), work, now)
        for a in dropped:
            a.work.cancel()  # if not started yet; a running one is simply not used

    def _read_and_prepare(
        self, sub: Subscription, start: Offsets, max_records: int, until: Offsets | None
    ) -> tuple[Page, Prepared | None]:
        page = self.readers.read(
            sub.topic, start, max_records=max_records, wait_ms=AHEAD_WAIT_MS, until=until
        )
        if len(page.records) < max_records:
            return page, None  # not used (a short page may predate later commits)
        return page, self.deliverer.prepare(sub, page.records)

    def _keeping_ahead(self, sub_id: str, in_time: bool) -> None:
        """Back off (module docstring) when a read-ahead was not ready when asked for."""
        if in_time:
            self._backoff.pop(sub_id, None)
            return
        _, after = self._backoff.get(sub_id, (0, 1))
        if len(self._backoff) > 4 * AHEAD_MAX:
            self._backoff.clear()  # bounded: a forgotten subscription simply tries again
        self._backoff[sub_id] = (after, min(2 * after, AHEAD_BACKOFF_MAX))

    async def _taken(
        self, sub: Subscription, start: Offsets, max_records: int, until: Offsets | None
    ) -> tuple[Page | None, Prepared | None]:
        """The read-ahead of ``sub`` if it is for this step and holds a full page (waited
        for if it is under way), else (None, None): then the step reads as always."""
        with self._ahead_lock:
            ahead = self._ahead.pop(sub.id, None)
        if ahead is None:
            return None, None
        if ahead.key != _ahead_key(start, max_records, until):
            ahead.work.cancel()
            return None, None  # read ahead from another position: read now instead
        if ahead.work.cancel():  # not even started: read now, and back off
            self._keeping_ahead(sub.id, False)
            return None, None
        if time.monotonic() - ahead.at > AHEAD_TTL_S:
            return None, None
        self._keeping_ahead(sub.id, ahead.work.done())
        try:
            page, prepared = await asyncio.wrap_future(ahead.work)
        except Exception as exc:  # e.g. Kafka or the KMS: the step reads and fails as ever
            log.debug("read-ahead of %s not used: %s", sub.id, type(exc).__name__)
            return None, None
        if len(page.records) < max_records:
            return None, None
        return page, prepared

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

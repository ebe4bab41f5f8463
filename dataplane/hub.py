"""Fan-out of live records: one reader thread per topic feeds every streaming subscription.

1,639 streaming subscriptions must not mean 1,639 Kafka consumers. A :class:`TopicHub` tails
its topic from the moment it starts and hands each batch to the asyncio queues of the
subscriptions positioned at the tail. A subscription that is behind catches up through the
:class:`~dataplane.readers.ReaderPool` first, then joins the live feed; one whose
queue overflows is told so and catches up again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

from dataplane.cursor import Offsets
from exchange.errors import ExchangeError
from exchange.kafka.port import InRecord, KafkaPort

log = logging.getLogger(__name__)


class Feed:
    """One subscription's view of a hub: a bounded queue of batches."""

    def __init__(self, maxsize: int = 256) -> None:
        self.queue: asyncio.Queue[Sequence[InRecord]] = asyncio.Queue(maxsize)
        self.overflowed = False

    def offer(self, batch: Sequence[InRecord]) -> None:
        try:
            self.queue.put_nowait(batch)
        except asyncio.QueueFull:
            self.overflowed = True


class TopicHub:
    def __init__(self, kafka: KafkaPort, topic: str, loop: asyncio.AbstractEventLoop) -> None:
        self.topic = topic
        self.loop = loop
        self.reader = kafka.reader(topic)
        self.reader.seek_to_end()
        # Every record below `position` was dispatched before now (or predates the hub).
        self.position: Offsets = self.reader.positions()
        self.feeds: set[Feed] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"hub-{topic}", daemon=True)
        self._thread.start()

    def subscribe(self) -> tuple[Feed, Offsets]:
        """Join the live feed; returns the feed and the position it starts after."""
        feed = Feed()
        self.feeds.add(feed)
        return feed, dict(self.position)

    def unsubscribe(self, feed: Feed) -> None:
        self.feeds.discard(feed)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self.reader.poll(timeout_ms=200, max_records=2000)
                position = self.reader.positions()
            except ExchangeError:
                log.warning("hub for %s: read failed; retrying", self.topic)
                self._stop.wait(1.0)
                continue
            if batch or position != self.position:
                try:
                    self.loop.call_soon_threadsafe(self._dispatch, batch, position)
                except RuntimeError:  # event loop closed
                    return

    def _dispatch(self, batch: list[InRecord], position: Offsets) -> None:
        self.position = position
        if batch:
            for feed in list(self.feeds):
                feed.offer(batch)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.reader.close()


class HubRegistry:
    """Hubs are created on first use per topic and live as long as the gateway."""

    def __init__(self, kafka: KafkaPort) -> None:
        self.kafka = kafka
        self.hubs: dict[str, TopicHub] = {}
        self._lock = threading.Lock()

    def get(self, topic: str, loop: asyncio.AbstractEventLoop) -> TopicHub:
        with self._lock:
            hub = self.hubs.get(topic)
            if hub is None:
                hub = self.hubs[topic] = TopicHub(self.kafka, topic, loop)
            return hub

    def close(self) -> None:
        with self._lock:
            hubs, self.hubs = list(self.hubs.values()), {}
        for hub in hubs:
            hub.close()

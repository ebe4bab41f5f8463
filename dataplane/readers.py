"""Pooled group-less topic readers: a pull request borrows one, seeks, polls, returns it.

Creating a Kafka consumer costs a connection and a metadata round trip, so readers are kept
per topic and reused; seeking is cheap.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dataplane.cursor import Offsets
from exchange.kafka.port import InRecord, KafkaPort, TopicReaderPort

# Completing a page with what is already committed: each poll waits this long at most, and
# the whole top-up as long (the records are known to exist, so only a slow fetch waits).
TOP_UP_POLL_MS = 200
TOP_UP_S = 1.0


@dataclass(frozen=True)
class Page:
    records: list[InRecord]
    next_offsets: Offsets


class ReaderPool:
    def __init__(self, kafka: KafkaPort, *, max_idle_per_topic: int = 4) -> None:
        self.kafka = kafka
        self.max_idle = max_idle_per_topic
        self._idle: dict[str, list[TopicReaderPort]] = defaultdict(list)
        self._lock = threading.Lock()

    @contextmanager
    def reader(self, topic: str) -> Iterator[TopicReaderPort]:
        with self._lock:
            reader = self._idle[topic].pop() if self._idle[topic] else None
        if reader is None:
            reader = self.kafka.reader(topic)
        ok = False
        try:
            yield reader
            ok = True
        finally:
            with self._lock:
                if ok and len(self._idle[topic]) < self.max_idle:
                    self._idle[topic].append(reader)
                    reader = None
            if reader is not None:
                reader.close()

    def end_offsets(self, topic: str) -> Offsets:
        with self.reader(topic) as r:
            return r.end_offsets()

    def ends_off_readers(self, topic: str) -> Offsets:
        """The topic's committed end asked on the port's own connection: a pooled reader's
        request waits behind that reader's fetch long-poll (the lag metric took ~0.3 s of a
        page's time so)."""
        return self.kafka.end_offsets(topic)

    def offsets_for_time(self, topic: str, timestamp_ms: int) -> Offsets:
        with self.reader(topic) as r:
            return r.offsets_for_time(timestamp_ms)

    def read(
        self,
        topic: str,
        start: Offsets,
        *,
        max_records: int,
        wait_ms: int,
        until: Offsets | None = None,
    ) -> Page:
        """Committed records from ``start`` (per partition), at most ``max_records``.

        Waits up to ``wait_ms`` for the first record. With ``until``, reads no record at or
        beyond those offsets (used to catch up to a live feed).
        """
        deadline = time.monotonic() + wait_ms / 1000
        with self.reader(topic) as r:
            got: list[InRecord] = []
            if r.positions() == start:
                got = _prefetched(r, max_records, until)
            if len(got) < max_records:  # from a fresh fetch, as a page always was
                got = []
                r.seek(start)
            while len(got) < max_records:
                remaining = max(0, int((deadline - time.monotonic()) * 1000))
                batch = r.poll(timeout_ms=min(remaining, 200), max_records=max_records - len(got))
                batch = _before(batch, until)
                got += batch
                if got or remaining == 0:
                    break
            batch = got
            while got and batch and len(got) < max_records:
                # Records arrive per partition fetch: take what else is already here (no
                # wait) so a page is not cut at the first partition's batch.
                batch = r.poll(timeout_ms=0, max_records=max_records - len(got))
                batch = _before(batch, until)
                got += batch
            if got and len(got) < max_records:  # still short: what else is committed?
                got += self._top_up(r, topic, max_records - len(got), until)
            # The reader's position has passed every record returned (poll never hands out
            # more than asked) and any transaction markers in between.
            positions = r.positions()
        nxt = dict(start)
        for p, pos in positions.items():
            bounded = pos if until is None else min(pos, until.get(p, 0))
            nxt[p] = max(start.get(p, 0), bounded)
        return Page(got, nxt)

    def _top_up(
        self, r: TopicReaderPort, topic: str, room: int, until: Offsets | None
    ) -> list[InRecord]:
        """The rest of what is committed now, up to ``room`` records. The first poll hands
        out what has arrived when its first record did: one partition's share of a fetch,
        or what a reader had fetched before the latest commits. Without this a page could
        hold 2 of 3 records published before it was asked for."""
        ends = self.kafka.end_offsets(topic)
        if until is not None:
            ends = {p: min(e, until.get(p, 0)) for p, e in ends.items()}
        out: list[InRecord] = []
        deadline = time.monotonic() + TOP_UP_S
        while len(out) < room and time.monotonic() < deadline:
            at = r.positions()
            # A gap of one is the commit marker after the last record read (publishes are
            # transactional): waiting for it would add a poll's wait to every live record.
            if all(e - at.get(p, 0) <= 1 for p, e in ends.items()):
                break
            batch = r.poll(timeout_ms=TOP_UP_POLL_MS, max_records=room - len(out))
            batch = _before(batch, until)
            if not batch:
                break  # nothing more arrived: what the ends count is not there to read
            out += batch
        return out

    def close(self) -> None:
        with self._lock:
            readers = [r for rs in self._idle.values() for r in rs]
            self._idle.clear()
        for r in readers:
            r.close()


def _prefetched(r: TopicReaderPort, max_records: int, until: Offsets | None) -> list[InRecord]:
    """A full page from what a pooled reader standing at the page's start has already
    fetched (no wait), else fewer records — then the caller discards them and seeks: what was
    kept may predate the latest commits, and only a full page is complete whatever was
    committed. The next page of a cursor in a backlog so needs no fetch round trip (the
    re-assignment a seek costs throws the prefetch away: ~60 ms a page under load)."""
    got: list[InRecord] = []
    while len(got) < max_records:
        batch = r.poll(timeout_ms=0, max_records=max_records - len(got))
        if not batch:
            break
        got += _before(batch, until)
    return got


def _before(batch: list[InRecord], until: Offsets | None) -> list[InRecord]:
    """The records of ``batch`` below ``until`` (per partition); all of them without it."""
    if until is None:
        return batch
    return [x for x in batch if x.offset < until.get(x.partition, 0)]

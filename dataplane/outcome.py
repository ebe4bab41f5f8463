"""Did a publish commit? Asked of Kafka when a crash left its idempotency claim unsettled.

The claim holds the answer staged while the transaction was open, so the batch's first
position is known, and that record carries the claim's request id in a header. Reading
read_committed at that position tells the three cases apart:

- the last stable offset is not past it: the transaction is still open → undecided;
- the record there is ours → committed;
- otherwise (skipped as aborted, another record) → aborted.
"""

from __future__ import annotations

import enum
import time
from typing import Protocol

from exchange.kafka.port import InRecord, Position, TopicReaderPort

REQUEST_HEADER = "exchange.request"


class Outcome(enum.Enum):
    COMMITTED = "committed"
    ABORTED = "aborted"
    UNDECIDED = "undecided"


class ReadersPort(Protocol):
    def reader(self, topic: str) -> TopicReaderPort: ...


def decide(at: Position, request_id: str, stable_end: int, seen: InRecord | None) -> Outcome:
    """Pure: the outcome given the partition's last stable offset and the first record read
    at or after ``at`` (None: the reader reached ``stable_end`` without one)."""
    if stable_end <= at.offset:
        return Outcome.UNDECIDED
    if seen is not None and seen.offset == at.offset:
        ours = dict(seen.headers).get(REQUEST_HEADER) == request_id.encode()
        return Outcome.COMMITTED if ours else Outcome.ABORTED
    return Outcome.ABORTED


class KafkaOutcomes:
    def __init__(self, kafka: ReadersPort, wait_s: float = 5.0) -> None:
        self.kafka, self.wait_s = kafka, wait_s

    def outcome(self, topic: str, at: Position, request_id: str) -> Outcome:
        reader = self.kafka.reader(topic)
        try:
            ends = reader.end_offsets()
            if ends.get(at.partition, 0) <= at.offset:
                return Outcome.UNDECIDED
            reader.seek({**ends, at.partition: at.offset})  # only this partition yields
            seen = self._first(reader, at, ends[at.partition])
            if seen is None and reader.positions()[at.partition] < ends[at.partition]:
                return Outcome.UNDECIDED  # could not read that far in time: ask again later
            return decide(at, request_id, ends[at.partition], seen)
        finally:
            reader.close()

    def _first(self, reader: TopicReaderPort, at: Position, end: int) -> InRecord | None:
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline and reader.positions()[at.partition] < end:
            for rec in reader.poll(timeout_ms=500, max_records=1):
                if rec.partition == at.partition:
                    return rec
        return None

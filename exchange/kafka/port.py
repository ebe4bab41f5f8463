"""The Kafka port: what the exchange needs from a Kafka client, and the values it trades in.

Two adapters implement it — :mod:`exchange.kafka.rdkafka` (librdkafka via confluent-kafka)
and :mod:`exchange.kafka.client` (kafka-python) — and ``tests/integration/
test_kafka_contract.py`` runs the same contract against both. Adapters translate their client
library's exceptions into :mod:`exchange.errors`: ``KafkaUnavailable`` (cannot reach or the
broker failed), ``NotFound`` (no such topic), ``Conflict`` (topic exists already).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

Header = tuple[str, bytes]


@dataclass(frozen=True)
class OutRecord:
    key: bytes | None
    value: bytes
    headers: Sequence[Header] = ()


@dataclass(frozen=True)
class Position:
    partition: int
    offset: int


@dataclass(frozen=True)
class InRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: Sequence[Header]


# Settings that make a topic safe for acks=all on a real cluster; on one broker they degrade.
def topic_config(replication: int) -> dict[str, str]:
    return {
        "min.insync.replicas": str(max(1, min(2, replication - 1))),
        "unclean.leader.election.enable": "false",
    }


class TopicReaderPort(Protocol):
    """A group-less, read_committed reader of one topic's partitions."""

    def seek(self, offsets: dict[int, int]) -> None:
        """Go to these offsets; partitions not named go to their beginning."""

    def seek_to_end(self) -> None: ...

    def end_offsets(self) -> dict[int, int]:
        """Per partition, the offset after the last committed record."""

    def offsets_for_time(self, timestamp_ms: int) -> dict[int, int]:
        """Per partition, the first offset at or after the time (else the end offset)."""

    def positions(self) -> dict[int, int]:
        """Per partition, the offset the next poll starts from."""

    def poll(self, timeout_ms: int = 500, max_records: int = 500) -> list[InRecord]:
        """Whatever is available (waits up to ``timeout_ms`` for the first), by partition and
        offset."""

    def close(self) -> None: ...


class KafkaPort(Protocol):
    def create_topic(
        self, name: str, partitions: int, *, compact: bool = False, retention_ms: int | None = None
    ) -> None:
        """Raises ``Conflict`` if it exists."""

    def ensure_topic(
        self,
        name: str,
        partitions: int = 1,
        *,
        compact: bool = False,
        retention_ms: int | None = None,
    ) -> None: ...

    def partitions(self, topic: str) -> list[int]:
        """Raises ``NotFound`` for an unknown topic."""

    def list_topics(self) -> list[str]: ...

    def ping(self) -> bool: ...

    def publish_atomically(
        self,
        topic: str,
        records: Sequence[OutRecord],
        before_commit: Callable[[list[Position]], None] | None = None,
    ) -> list[Position]:
        """All records in one transaction; ``before_commit`` runs while it is still open and
        aborts it by raising."""

    def publish_transaction(
        self,
        parts: Sequence[tuple[str, Sequence[OutRecord]]],
        before_commit: Callable[[list[list[Position]]], None] | None = None,
    ) -> list[list[Position]]:
        """Several (topic, records) parts in one transaction, all or nothing; each part's
        positions in order (group commit: many requests share it). ``before_commit`` as
        above. A record the broker refuses raises ``InvalidInput`` (``record_refused``)."""

    def fence_transactions(self) -> int:
        """Open every transactional slot now, aborting what a previous process with the same
        ids left open; the number of slots still unfenced (Kafka unreachable)."""

    def send_durably(self, topic: str, record: OutRecord) -> Position: ...

    def send_many_durably(self, topic: str, records: Sequence[OutRecord]) -> list[Position]:
        """In order, acks=all, idempotent; returns once every record is acknowledged."""

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Per partition, the offset after the last committed record (read_committed: the
        last stable offset), as a reader's ``end_offsets`` — but asked on a connection no
        reader's fetch long-poll holds, so it costs one quick round trip. Partitions as
        first seen for the topic."""

    def reader(self, topic: str) -> TopicReaderPort: ...

    def close(self) -> None: ...

"""The Kafka port alone, per backend: records/s through ``publish_atomically`` (batches of 500,
one transaction each) and through a reader's ``poll``, librdkafka (``project``, the default)
vs kafka-python (``baseline``). The evidence for the default in ``exchange.kafka``."""

from __future__ import annotations

import time
import uuid
from typing import Any

from bench.env import Bench
from bench.report import measure
from exchange.kafka import KafkaClient, open_kafka
from exchange.kafka.port import KafkaPort, OutRecord
from exchange.kafka.security import KafkaSecurity

BATCH = 500


def scale(quick: bool) -> int:
    return 5_000 if quick else 50_000


def _records(n: int) -> list[OutRecord]:
    # ~150-byte values, like the side-by-side measurement.
    return [OutRecord(f"k{i}".encode(), bytes(150), (("h", b"1"),)) for i in range(n)]


def _publish(kafka: KafkaPort, topic: str, records: list[OutRecord]) -> float:
    kafka.publish_atomically(topic, records[:BATCH])  # warm-up: producer, metadata
    start = time.perf_counter()
    for i in range(0, len(records), BATCH):
        kafka.publish_atomically(topic, records[i : i + BATCH])
    return time.perf_counter() - start


def _read(kafka: KafkaPort, topic: str, n: int, timeout_s: float = 120.0) -> float:
    reader = kafka.reader(topic)
    try:
        reader.seek({})
        got = 0
        start = time.perf_counter()
        while got < n and time.perf_counter() - start < timeout_s:
            got += len(reader.poll(timeout_ms=200, max_records=2000))
        if got < n:
            raise TimeoutError(f"read {got} of {n}")
        return time.perf_counter() - start
    finally:
        reader.close()


def _one(
    bootstrap: str, backend: KafkaClient, n: int, security: KafkaSecurity
) -> tuple[float, float]:
    kafka = open_kafka(bootstrap, f"bench-port-{backend}", backend, security=security)
    try:
        topic = f"bench.port-{backend}-{uuid.uuid4().hex[:6]}"
        kafka.create_topic(topic, 2)
        publish_s = _publish(kafka, topic, _records(n))
        read_s = _read(kafka, topic, n + BATCH)
        return n / publish_s, (n + BATCH) / read_s
    finally:
        kafka.close()


def run(b: Bench) -> list[dict[str, Any]]:
    n = scale(b.quick)
    rd_pub, rd_read = _one(b.bootstrap, "librdkafka", n, b.security)
    kp_pub, kp_read = _one(b.bootstrap, "kafka-python", n, b.security)
    note = f"{n} records of ~150 B, 2 partitions; project: librdkafka, baseline: kafka-python"
    return [
        measure(
            "port_publish", "records/s", rd_pub, kp_pub, "> 1x", note=f"{note}, batches of {BATCH}"
        ),
        measure("port_read", "records/s", rd_read, kp_read, "> 1x", note=f"{note}, read_committed"),
    ]

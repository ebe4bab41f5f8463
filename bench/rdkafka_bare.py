"""The librdkafka baselines: confluent-kafka used directly, with the gateway's producer
settings (acks=all, idempotent, one transaction per batch) and its consumer settings
(group-less, read_committed). The ceiling the issue measures the gateway against."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, Producer, TopicPartition

from bench.kafka_bare import PLAINTEXT, Encoded
from exchange.kafka.security import KafkaSecurity


def producer(bootstrap: str, security: KafkaSecurity = PLAINTEXT) -> Producer:
    """Configured like ``RdKafkaAdapter._new_transactional``."""
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": "bench-rd-tx",
            "transactional.id": f"bench-rd-{uuid.uuid4()}",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 1,
            "message.max.bytes": 16 * 1024 * 1024,
            **security.librdkafka_config(),
        }
    )
    p.init_transactions(30)
    return p


def send_batch(p: Producer, topic: str, batch: Sequence[Encoded]) -> None:
    """One transaction; every delivery report is in before the commit, as in the adapter."""
    failed: list[object] = []

    def report(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(err)

    p.begin_transaction()
    for r in batch:
        p.produce(topic, r.value, r.key, headers=list(r.headers), on_delivery=report)
    if p.flush(30) or failed:
        raise RuntimeError(f"bare librdkafka batch not delivered: {failed[:1]}")
    p.commit_transaction(30)


def consumer(
    bootstrap: str, topic: str, *, from_end: bool = False, security: KafkaSecurity = PLAINTEXT
) -> Consumer:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": "bench-rd-r",
            "group.id": "bench-rd-unused",  # required; assign only, never committed
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            **security.librdkafka_config(),
        }
    )
    meta = c.list_topics(topic, timeout=15).topics[topic]
    start = OFFSET_END if from_end else OFFSET_BEGINNING
    c.assign([TopicPartition(topic, p, start) for p in sorted(meta.partitions)])
    return c


def read(
    c: Consumer,
    n: int,
    *,
    timeout_s: float = 120.0,
    each: Callable[[Encoded], None] | None = None,
) -> list[Encoded]:
    """Consume until ``n`` records (kept only when ``each`` is None) or the timeout."""
    out: list[Encoded] = []
    seen = 0
    deadline = time.monotonic() + timeout_s
    while seen < n and time.monotonic() < deadline:
        for m in c.consume(2000, 0.2):
            if m.error() is not None:
                raise RuntimeError(f"bare librdkafka read failed: {m.error()}")
            e = Encoded(m.key(), m.value() or b"", tuple(m.headers() or ()))
            seen += 1
            if each is None:
                out.append(e)
            else:
                each(e)
    if seen < n:
        raise TimeoutError(f"read {seen} of {n} records")
    return out

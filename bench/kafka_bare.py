"""The baselines: kafka-python used directly, with the gateway's producer settings
(acks=all, idempotent, one transaction per batch) and its consumer settings
(group-less, read_committed)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from exchange.kafka.security import KafkaSecurity

PLAINTEXT = KafkaSecurity()


@dataclass(frozen=True)
class Encoded:
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]]


def create_topic(
    bootstrap: str, name: str, partitions: int, security: KafkaSecurity = PLAINTEXT
) -> None:
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="bench-admin", **security.kafka_python_config()
    )
    try:
        topic = NewTopic(name, partitions, 1, topic_configs={"min.insync.replicas": "1"})
        admin.create_topics([topic], timeout_ms=15000)
    finally:
        admin.close()


def producer(bootstrap: str, security: KafkaSecurity = PLAINTEXT) -> KafkaProducer:
    """Configured like ``KafkaAdapter._transactional``."""
    p = KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="bench-bare-tx",
        transactional_id=f"bench-{uuid.uuid4()}",
        enable_idempotence=True,
        acks="all",
        linger_ms=0,
        max_request_size=16 * 1024 * 1024,
        **security.kafka_python_config(),
    )
    p.init_transactions()
    return p


def send_batch(p: KafkaProducer, topic: str, batch: Sequence[Encoded]) -> None:
    """One transaction, exactly as ``KafkaAdapter.publish_atomically`` does it."""
    p.begin_transaction()
    futures = [p.send(topic, value=r.value, key=r.key, headers=list(r.headers)) for r in batch]
    p.flush()
    for f in futures:
        f.get(timeout=15)
    p.commit_transaction()


def consumer(
    bootstrap: str, topic: str, *, from_end: bool = False, security: KafkaSecurity = PLAINTEXT
) -> KafkaConsumer:
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="bench-bare-r",
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_poll_records=2000,
        **security.kafka_python_config(),
    )
    parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
    c.assign(parts)
    if from_end:
        c.seek_to_end(*parts)
    else:
        c.seek_to_beginning(*parts)
    for tp in parts:
        c.position(tp)  # resolve the lazy seek now, not inside a timed loop
    return c


def read(
    c: KafkaConsumer,
    n: int,
    *,
    timeout_s: float = 120.0,
    each: Callable[[Encoded], None] | None = None,
) -> list[Encoded]:
    """Poll until ``n`` records (kept only when ``each`` is None) or the timeout."""
    out: list[Encoded] = []
    seen = 0
    deadline = time.monotonic() + timeout_s
    while seen < n and time.monotonic() < deadline:
        for msgs in c.poll(timeout_ms=200, max_records=2000).values():
            for m in msgs:
                e = Encoded(m.key, m.value, tuple(m.headers or ()))
                seen += 1
                if each is None:
                    out.append(e)
                else:
                    each(e)
    if seen < n:
        raise TimeoutError(f"read {seen} of {n} records")
    return out

"""Pull pages from the pooled readers (ReaderPool), on both Kafka clients and the real broker.

A page holds what was committed before it was asked for, up to its size: a client that
publishes three records and then pulls gets the three in one page. The first poll of a page
hands out only what has arrived when its first record did (one partition's share of a fetch,
or what a reader had fetched before the latest commits); the pool tops the page up to the
topic's end as it stands. Without that, pages of 2 where 3 were committed showed up in the
full suite (test_restart_resume, test_cli_journey) once reads got faster.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from dataplane.readers import ReaderPool
from exchange.kafka import KafkaClient, open_kafka
from exchange.kafka.port import KafkaPort, OutRecord
from tests.support.kafka import security_for

pytestmark = pytest.mark.kafka


@pytest.fixture(params=["librdkafka", "kafka-python"])
def kafka(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[KafkaPort]:
    backend: KafkaClient = request.param
    k = open_kafka(
        kafka_bootstrap,
        f"pool-{uuid.uuid4().hex[:6]}",
        backend,
        security=security_for(kafka_bootstrap),
    )
    yield k
    k.close()


def test_a_page_over_partitions_holds_what_was_committed_up_to_its_size(kafka: KafkaPort) -> None:
    for n in range(4):  # fresh topics and readers: the first fetch is where pages fell short
        topic = f"test.pool-{uuid.uuid4().hex[:8]}"
        kafka.create_topic(topic, 3)
        sent = kafka.publish_atomically(
            topic, [OutRecord(f"k{i}".encode(), f"v{i}".encode()) for i in range(6)]
        )
        assert len({p.partition for p in sent}) > 1, "the records should span partitions"
        pool = ReaderPool(kafka)
        try:
            first = pool.read(topic, {}, max_records=3, wait_ms=5000)
            assert len(first.records) == 3, n
            rest = pool.read(topic, first.next_offsets, max_records=500, wait_ms=5000)
            values = sorted(r.value for r in first.records + rest.records)
            assert values == sorted(f"v{i}".encode() for i in range(6)), n
        finally:
            pool.close()


def test_a_page_after_commits_holds_all_of_them(kafka: KafkaPort) -> None:
    """The pooled reader has read to the end and idles; three publishes commit; the next
    page (from where that reader stands) holds all three."""
    topic = f"test.pool-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, 2)
    kafka.publish_atomically(topic, [OutRecord(b"k", b"first")])
    pool = ReaderPool(kafka, max_idle_per_topic=1)
    try:
        cursor = pool.read(topic, {}, max_records=500, wait_ms=5000).next_offsets
        for n in range(4):
            time.sleep(0.3)
            for i in range(3):
                kafka.publish_atomically(topic, [OutRecord(f"k{i}".encode(), f"r{n}-{i}".encode())])
            page = pool.read(topic, cursor, max_records=500, wait_ms=5000)
            assert sorted(r.value for r in page.records) == [f"r{n}-{i}".encode() for i in range(3)]
            cursor = page.next_offsets
    finally:
        pool.close()

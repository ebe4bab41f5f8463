"""The Kafka adapter against the real broker: atomic batches, durable sends, reading back."""

import uuid

import pytest

from exchange.errors import Conflict
from exchange.kafka.client import KafkaAdapter, OutRecord

pytestmark = pytest.mark.kafka


@pytest.fixture
def adapter(kafka_bootstrap: str):  # type: ignore[no-untyped-def]
    a = KafkaAdapter(kafka_bootstrap, client_id=f"test-{uuid.uuid4().hex[:6]}")
    yield a
    a.close()


def test_transactional_batch_is_written_and_read_back(adapter: KafkaAdapter) -> None:
    topic = f"test.tx-{uuid.uuid4().hex[:8]}"
    adapter.create_topic(topic, 2)
    records = [OutRecord(f"k{i}".encode(), f"v{i}".encode(), (("h", b"1"),)) for i in range(20)]
    positions = adapter.publish_atomically(topic, records)
    assert len(positions) == 20
    assert {p.partition for p in positions} <= {0, 1}

    reader = adapter.reader(topic)
    try:
        reader.seek({})
        got = []
        for _ in range(40):
            got += reader.poll(timeout_ms=500)
            if len(got) >= 20:
                break
    finally:
        reader.close()
    assert sorted(r.value for r in got) == sorted(r.value for r in records)
    assert all(r.headers == (("h", b"1"),) for r in got)
    assert {(r.partition, r.offset) for r in got} == {(p.partition, p.offset) for p in positions}


def test_creating_an_existing_topic_is_a_conflict(adapter: KafkaAdapter) -> None:
    topic = f"test.dup-{uuid.uuid4().hex[:8]}"
    adapter.create_topic(topic, 1)
    with pytest.raises(Conflict):
        adapter.create_topic(topic, 1)


def test_durable_send_returns_position(adapter: KafkaAdapter) -> None:
    topic = f"test.durable-{uuid.uuid4().hex[:8]}"
    adapter.create_topic(topic, 1)
    first = adapter.send_durably(topic, OutRecord(None, b"a"))
    second = adapter.send_durably(topic, OutRecord(None, b"b"))
    assert (first.partition, second.offset) == (0, first.offset + 1)
    assert adapter.ping()


def test_concurrent_transactions_use_the_producer_pool(adapter: KafkaAdapter) -> None:
    import threading

    topic = f"test.pool-{uuid.uuid4().hex[:8]}"
    adapter.create_topic(topic, 3)
    results: list[list[tuple[int, int]]] = []

    def publish(n: int) -> None:
        batch = [OutRecord(f"{n}-{i}".encode(), f"v{n}-{i}".encode()) for i in range(50)]
        pos = adapter.publish_atomically(topic, batch)
        results.append([(p.partition, p.offset) for p in pos])

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    positions = [p for r in results for p in r]
    assert len(results) == 8
    assert len(set(positions)) == 8 * 50  # no position handed out twice
    reader = adapter.reader(topic)
    reader.seek({})
    got = []
    for _ in range(40):
        got += reader.poll(timeout_ms=500)
        if len(got) >= 400:
            break
    reader.close()
    assert len(got) == 400

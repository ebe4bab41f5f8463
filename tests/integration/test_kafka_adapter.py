"""The Kafka adapter against the real broker: atomic batches, durable sends, reading back."""

import uuid

import pytest

from exchange.errors import Conflict, DependencyUnavailable
from exchange.kafka.client import InRecord, KafkaAdapter, OutRecord, Position
from tests.support.kafka import security_for

pytestmark = pytest.mark.kafka


@pytest.fixture
def adapter(kafka_bootstrap: str):  # type: ignore[no-untyped-def]
    a = KafkaAdapter(
        kafka_bootstrap,
        security=security_for(kafka_bootstrap),
        client_id=f"test-{uuid.uuid4().hex[:6]}",
    )
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


def _read_all(adapter: KafkaAdapter, topic: str, want: int) -> list[InRecord]:
    reader = adapter.reader(topic)
    try:
        reader.seek({})
        got: list[InRecord] = []
        for _ in range(10 if want == 0 else 40):
            got += reader.poll(timeout_ms=300)
            if want and len(got) >= want:
                break
        return got
    finally:
        reader.close()


def test_one_transaction_over_several_topics_answers_each_part(adapter: KafkaAdapter) -> None:
    a, b = (f"test.group-{n}-{uuid.uuid4().hex[:8]}" for n in "ab")
    adapter.create_topic(a, 1)
    adapter.create_topic(b, 1)
    parts = [
        (a, [OutRecord(b"1", b"a1"), OutRecord(b"2", b"a2")]),
        (b, [OutRecord(b"3", b"b1")]),
        (a, [OutRecord(b"4", b"a3")]),
    ]
    seen: list[list[Position]] = []
    positions = adapter.publish_transaction(parts, seen.extend)
    assert seen == positions
    assert [[p.offset for p in ps] for ps in positions] == [[0, 1], [0], [2]]
    assert [r.value for r in _read_all(adapter, a, 3)] == [b"a1", b"a2", b"a3"]
    assert [r.value for r in _read_all(adapter, b, 1)] == [b"b1"]


def test_a_raising_hook_aborts_every_part(adapter: KafkaAdapter) -> None:
    a, b = (f"test.abort-{n}-{uuid.uuid4().hex[:8]}" for n in "ab")
    adapter.create_topic(a, 1)
    adapter.create_topic(b, 1)

    def refuse(_: list[list[Position]]) -> None:
        raise DependencyUnavailable("audit log unavailable")

    with pytest.raises(DependencyUnavailable):
        adapter.publish_transaction(
            [(a, [OutRecord(None, b"x")]), (b, [OutRecord(None, b"y")])], refuse
        )
    adapter.publish_transaction([(a, [OutRecord(None, b"after")])])
    assert [r.value for r in _read_all(adapter, a, 1)] == [
        b"after"
    ]  # the aborted one is never read
    assert _read_all(adapter, b, 0) == []

"""The Kafka port's contract, run against every backend on the real broker."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from exchange.errors import Conflict, InvalidInput, KafkaUnavailable, NotFound
from exchange.kafka import KafkaClient, open_kafka
from exchange.kafka.port import InRecord, KafkaPort, OutRecord, Position, TopicReaderPort
from tests.support.kafka import security_for

pytestmark = pytest.mark.kafka

BACKENDS: list[KafkaClient] = ["librdkafka", "kafka-python"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> KafkaClient:
    name: KafkaClient = request.param
    return name


@pytest.fixture
def kafka(kafka_bootstrap: str, backend: KafkaClient) -> Iterator[KafkaPort]:
    k = open_kafka(
        kafka_bootstrap,
        f"contract-{uuid.uuid4().hex[:6]}",
        backend,
        security=security_for(kafka_bootstrap),
    )
    yield k
    k.close()


@pytest.fixture
def topic(kafka: KafkaPort) -> str:
    name = f"test.contract-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(name, 2)
    return name


def records(n: int, tag: str = "v") -> list[OutRecord]:
    return [OutRecord(f"k{i}".encode(), f"{tag}{i}".encode(), (("h", b"1"),)) for i in range(n)]


def read_all(reader: TopicReaderPort, n: int, attempts: int = 30) -> list[InRecord]:
    got: list[InRecord] = []
    for _ in range(attempts):
        got += reader.poll(timeout_ms=300, max_records=1000)
        if len(got) >= n:
            break
    return got


def eventually(check: Callable[[], bool], within_s: float = 15.0) -> bool:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def read_from_start(kafka: KafkaPort, topic: str, n: int) -> list[InRecord]:
    reader = kafka.reader(topic)
    try:
        reader.seek({})
        return read_all(reader, n)
    finally:
        reader.close()


def test_topics_are_created_listed_and_ensured(kafka: KafkaPort) -> None:
    name = f"test.contract-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(name, 3, retention_ms=3_600_000)
    assert kafka.partitions(name) == [0, 1, 2]
    assert name in kafka.list_topics()
    kafka.ensure_topic(name, 3)  # exists: no error
    compacted = f"{name}.c"
    kafka.ensure_topic(compacted, 1, compact=True)
    assert kafka.partitions(compacted) == [0]
    assert kafka.ping()


def test_creating_an_existing_topic_is_a_conflict(kafka: KafkaPort, topic: str) -> None:
    with pytest.raises(Conflict):
        kafka.create_topic(topic, 2)


def test_atomic_batch_positions_match_what_is_read(kafka: KafkaPort, topic: str) -> None:
    sent = records(25)
    positions = kafka.publish_atomically(topic, sent)
    assert len(positions) == 25 and len(set(positions)) == 25
    got = read_from_start(kafka, topic, 25)
    by_position = {(r.partition, r.offset): r for r in got}
    assert set(by_position) == {(p.partition, p.offset) for p in positions}
    for record, p in zip(sent, positions, strict=True):
        back = by_position[(p.partition, p.offset)]
        assert (back.key, back.value, tuple(back.headers)) == (
            record.key,
            record.value,
            (("h", b"1"),),
        )
        assert back.topic == topic and back.timestamp_ms > 0


def test_batch_is_invisible_until_commit(kafka: KafkaPort, topic: str) -> None:
    reader = kafka.reader(topic)
    reader.seek({})
    before = reader.end_offsets()
    seen_inside: list[InRecord] = []
    ends_inside: list[dict[int, int]] = []
    given: list[Position] = []

    def before_commit(positions: list[Position]) -> None:
        given.extend(positions)
        seen_inside.extend(reader.poll(timeout_ms=1000))
        ends_inside.append(reader.end_offsets())

    try:
        positions = kafka.publish_atomically(topic, records(10), before_commit)
        assert seen_inside == [] and ends_inside == [before]
        assert given == positions
        after = read_all(reader, 10)
        assert sorted(r.value for r in after) == sorted(r.value for r in records(10))
        assert sum(reader.end_offsets().values()) > sum(before.values()) + 10  # + commit markers
    finally:
        reader.close()


def test_a_failing_before_commit_aborts_the_batch(kafka: KafkaPort, topic: str) -> None:
    class AuditDown(Exception):
        pass

    def fail(_: list[Position]) -> None:
        raise AuditDown

    with pytest.raises(AuditDown):
        kafka.publish_atomically(topic, records(10, "aborted"), fail)
    kafka.publish_atomically(topic, records(3, "kept"))  # the producer is usable again
    got = read_from_start(kafka, topic, 3)  # aborted records would come first: lower offsets
    assert sorted(r.value for r in got) == [b"kept0", b"kept1", b"kept2"]


def test_concurrent_batches_get_distinct_positions(kafka: KafkaPort, topic: str) -> None:
    results: list[list[Position]] = []

    def publish(n: int) -> None:
        results.append(kafka.publish_atomically(topic, records(50, f"{n}-")))

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    positions = [p for r in results for p in r]
    assert len(results) == 8 and len(set(positions)) == 400
    assert len(read_from_start(kafka, topic, 400)) == 400


def test_one_transaction_over_several_topics_answers_each_part(kafka: KafkaPort) -> None:
    a, b = (f"test.contract-{n}-{uuid.uuid4().hex[:8]}" for n in "ab")
    kafka.create_topic(a, 1)
    kafka.create_topic(b, 1)
    parts = [(a, records(2, "a")), (b, records(1, "b")), (a, records(2, "c"))]
    seen: list[list[Position]] = []
    positions = kafka.publish_transaction(parts, seen.extend)
    assert seen == positions
    assert [[p.offset for p in ps] for ps in positions] == [[0, 1], [0], [2, 3]]
    assert [r.value for r in read_from_start(kafka, a, 4)] == [b"a0", b"a1", b"c0", b"c1"]
    assert [r.value for r in read_from_start(kafka, b, 1)] == [b"b0"]


def test_a_failing_before_commit_aborts_every_part(kafka: KafkaPort) -> None:
    a, b = (f"test.contract-{n}-{uuid.uuid4().hex[:8]}" for n in "ab")
    kafka.create_topic(a, 1)
    kafka.create_topic(b, 1)

    def fail(_: list[list[Position]]) -> None:
        raise RuntimeError("audit down")

    with pytest.raises(RuntimeError):
        kafka.publish_transaction([(a, records(2, "x")), (b, records(2, "y"))], fail)
    kafka.publish_transaction([(a, records(1, "kept"))])
    assert [r.value for r in read_from_start(kafka, a, 1)] == [b"kept0"]
    assert read_all_from_start_quietly(kafka, b) == []


def test_a_record_the_broker_refuses_is_the_sender_s_fault(kafka: KafkaPort, topic: str) -> None:
    """Over the broker's message.max.bytes (1 MiB by default): not an outage (503) but a
    refusal of this request (422), and the producer keeps working for the next one."""
    huge = OutRecord(None, b"x" * (2 * 1024 * 1024))
    with pytest.raises(InvalidInput) as refused:
        kafka.publish_transaction([(topic, [huge])])
    assert refused.value.code == "record_refused"
    assert len(kafka.publish_atomically(topic, records(2))) == 2


def read_all_from_start_quietly(kafka: KafkaPort, topic: str) -> list[InRecord]:
    reader = kafka.reader(topic)
    try:
        reader.seek({})
        return read_all(reader, 1, attempts=5)
    finally:
        reader.close()


def test_durable_sends_return_consecutive_positions(kafka: KafkaPort) -> None:
    name = f"test.contract-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(name, 1)
    first = kafka.send_durably(name, OutRecord(None, b"a"))
    more = kafka.send_many_durably(name, [OutRecord(b"k", b"b"), OutRecord(None, b"c")])
    assert first == Position(0, 0)
    assert more == [Position(0, 1), Position(0, 2)]
    got = read_from_start(kafka, name, 3)
    assert [(r.offset, r.key, r.value) for r in got] == [
        (0, None, b"a"),
        (1, b"k", b"b"),
        (2, None, b"c"),
    ]


def test_reader_seeks_by_offset_end_and_time(kafka: KafkaPort) -> None:
    name = f"test.contract-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(name, 1)
    kafka.send_many_durably(name, [OutRecord(None, f"early{i}".encode()) for i in range(5)])
    time.sleep(0.05)
    boundary = int(time.time() * 1000)
    time.sleep(0.05)
    kafka.send_many_durably(name, [OutRecord(None, f"late{i}".encode()) for i in range(5)])

    reader = kafka.reader(name)
    try:
        assert reader.end_offsets() == {0: 10}
        assert reader.offsets_for_time(boundary) == {0: 5}
        assert reader.offsets_for_time(boundary + 3_600_000) == {0: 10}  # none that late: end

        reader.seek({0: 7})
        assert reader.positions() == {0: 7}
        assert [r.value for r in read_all(reader, 3)] == [b"late2", b"late3", b"late4"]
        assert reader.positions() == {0: 10}

        reader.seek({})  # beginning
        assert reader.positions() == {0: 0}
        first = reader.poll(timeout_ms=3000, max_records=2)
        assert [r.offset for r in first] == [0, 1]
        assert reader.positions() == {0: 2}

        reader.seek_to_end()
        assert reader.positions() == {0: 10}
        assert reader.poll(timeout_ms=200) == []
        kafka.send_durably(name, OutRecord(None, b"new"))
        assert [r.value for r in read_all(reader, 1)] == [b"new"]
    finally:
        reader.close()


def test_poll_returns_what_is_there_without_waiting_for_more(kafka: KafkaPort) -> None:
    name = f"test.contract-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(name, 1)
    kafka.send_many_durably(name, [OutRecord(None, b"x")] * 3)
    reader = kafka.reader(name)
    try:
        reader.seek({})
        read_all(reader, 1, attempts=10)  # connected and fetching
        reader.seek({})
        started = time.monotonic()
        got = reader.poll(5000, 1000)
        if len(got) < 3:  # a client may hand out one fetch's records before the next
            got += reader.poll(5000, 1000)
        assert len(got) == 3
        assert time.monotonic() - started < 2.5  # not the 5 s timeout
    finally:
        reader.close()


def test_unknown_topic_is_not_found_quickly(kafka: KafkaPort) -> None:
    missing = f"test.missing-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    with pytest.raises(NotFound):
        kafka.partitions(missing)
    with pytest.raises(NotFound):
        kafka.reader(missing)
    with pytest.raises(NotFound):
        kafka.publish_atomically(missing, records(1))
    with pytest.raises(NotFound):
        kafka.send_durably(missing, OutRecord(None, b"x"))
    assert time.monotonic() - started < 10


@pytest.mark.slow
def test_unreachable_bootstrap_is_unavailable_within_bounds(backend: KafkaClient) -> None:
    from exchange.kafka.broker import free_port

    k = open_kafka(f"127.0.0.1:{free_port()}", "contract-down", backend, request_timeout_ms=2000)
    try:
        for call in (
            lambda: k.create_topic("t", 1),
            lambda: k.partitions("t"),
            lambda: k.reader("t"),
            lambda: k.publish_atomically("t", records(1)),
            lambda: k.send_durably("t", OutRecord(None, b"x")),
        ):
            started = time.monotonic()
            with pytest.raises(KafkaUnavailable):
                call()
            assert time.monotonic() - started < 15
        started = time.monotonic()
        assert not k.ping()
        assert time.monotonic() - started < 15
    finally:
        k.close()


def test_reads_resumed_at_positions_never_repeat_a_record(kafka: KafkaPort) -> None:
    """How a pooled reader serves pulls: seek to a cursor, poll, keep the positions."""
    name = f"test.contract-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(name, 3)
    sent = kafka.publish_atomically(name, records(6))
    reader = kafka.reader(name)
    seen: list[tuple[int, int]] = []
    cursor: dict[int, int] = {}
    try:
        for _ in range(6):
            reader.seek(cursor)
            seen += [(r.partition, r.offset) for r in reader.poll(timeout_ms=700, max_records=2)]
            cursor = reader.positions()
    finally:
        reader.close()
    assert sorted(seen) == sorted((p.partition, p.offset) for p in sent)


def test_port_end_offsets_match_a_reader_s_and_stop_at_an_open_transaction(
    kafka: KafkaPort, topic: str
) -> None:
    """The port's end_offsets (what the audit log asks in every append, off the readers'
    connections) is a read_committed reader's end: the last stable offset, so an open
    transaction's records are not counted, a commit and a durable send are."""
    kafka.publish_atomically(topic, records(3))
    reader = kafka.reader(topic)
    try:
        reader.seek({})
        read_all(reader, 3)  # the reader is at the end, its fetch long-polling
        before = kafka.end_offsets(topic)
        assert before == reader.end_offsets() and sum(before.values()) >= 3
        inside: list[dict[int, int]] = []

        def before_commit(_: list[Position]) -> None:
            inside.append(kafka.end_offsets(topic))
            inside.append(reader.end_offsets())

        sent = kafka.publish_atomically(topic, records(4, "t"), before_commit)
        assert inside == [before, before]  # nothing of the open transaction
        # Past the records and their commit marker. The coordinator writes the markers after
        # the commit has returned, so the last stable offset gets there a moment later.
        want = dict(before)
        for s in sent:
            want[s.partition] = max(want[s.partition], s.offset + 2)
        assert eventually(lambda: kafka.end_offsets(topic) == want)
        assert reader.end_offsets() == want
        durable = kafka.send_durably(topic, OutRecord(None, b"d"))
        want[durable.partition] = durable.offset + 1
        assert eventually(lambda: kafka.end_offsets(topic) == want)
    finally:
        reader.close()
    with pytest.raises(NotFound):
        kafka.end_offsets(f"test.missing-{uuid.uuid4().hex[:8]}")


def test_a_page_from_where_the_reader_stands_holds_what_was_committed_before_it(
    kafka: KafkaPort, backend: KafkaClient
) -> None:
    """Read-your-writes for a pull: records committed before a page is asked for are in it
    (up to its size), also when the pooled reader is asked to go on exactly where it stands.
    A reader that kept what it had prefetched before those commits handed out only part of
    them (the perf branch's ccdfdb2, reverted: short pull pages in the full suite).
    kafka-python may hand out one fetch's records before the next (see
    test_poll_returns_what_is_there_without_waiting_for_more): a second poll there."""
    name = f"test.contract-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(name, 1)
    kafka.publish_atomically(name, records(2, "a"))
    reader = kafka.reader(name)
    try:
        reader.seek({})
        assert len(read_all(reader, 2)) == 2
        for n in range(5):  # each round: a fetcher idle at the end, then three commits
            time.sleep(0.3)
            for i in range(3):
                kafka.publish_atomically(name, [OutRecord(None, f"r{n}-{i}".encode())])
            reader.seek(reader.positions())
            page = reader.poll(timeout_ms=5000, max_records=500)
            if backend == "kafka-python" and len(page) < 3:
                page += reader.poll(timeout_ms=5000, max_records=500)
            assert [r.value for r in page] == [f"r{n}-{i}".encode() for i in range(3)], n
    finally:
        reader.close()

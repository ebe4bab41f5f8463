"""The librdkafka adapter's transaction handling without a broker: a stand-in producer records
what the adapter asks of it and fails where told to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from exchange.errors import InvalidInput, KafkaUnavailable
from exchange.kafka.port import OutRecord, Position
from exchange.kafka.rdkafka import RdKafkaAdapter


class FakeMessage:
    def __init__(self, partition: int, offset: int) -> None:
        self._p, self._o = partition, offset

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


class FakeProducer:
    def __init__(self, *, fail_abort: bool = False, fail_commit: bool = False) -> None:
        self.fail_abort, self.fail_commit = fail_abort, fail_commit
        self.calls: list[str] = []
        self.pending: list[Callable[[], None]] = []
        self.offset = 0

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, topic: str, value: bytes, key: Any, **kw: Any) -> None:
        msg = FakeMessage(0, self.offset)
        self.offset += 1
        self.pending.append(lambda: kw["on_delivery"](None, msg))

    def flush(self, timeout: float = -1) -> int:
        for report in self.pending:
            report()
        self.pending.clear()
        return 0

    def poll(self, timeout: float = -1) -> int:
        return self.flush()

    def commit_transaction(self, timeout: float = -1) -> None:
        self.calls.append("commit")
        if self.fail_commit:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))

    def abort_transaction(self, timeout: float = -1) -> None:
        self.calls.append("abort")
        if self.fail_abort:
            raise KafkaException(KafkaError(KafkaError._FENCED))

    def purge(self) -> None:
        self.calls.append("purge")


def adapter_with(producers: list[FakeProducer]) -> RdKafkaAdapter:
    a = RdKafkaAdapter("127.0.0.1:1", transactional_producers=1)
    made = iter(producers)
    a._new_transactional = lambda slot: next(made)  # type: ignore[assignment,method-assign,return-value]
    a._known.add("t")
    return a


def test_before_commit_sees_positions_inside_the_open_transaction() -> None:
    p = FakeProducer()
    a = adapter_with([p])
    seen: list[list[Position]] = []

    def before_commit(positions: list[Position]) -> None:
        seen.append(positions)
        assert p.calls == ["begin"]  # not committed yet

    got = a.publish_atomically("t", [OutRecord(None, b"a"), OutRecord(None, b"b")], before_commit)
    assert got == seen[0] == [Position(0, 0), Position(0, 1)]
    assert p.calls == ["begin", "commit"]


def test_a_raising_before_commit_aborts_and_keeps_the_producer() -> None:
    p = FakeProducer()
    a = adapter_with([p])

    def boom(_: list[Position]) -> None:
        raise RuntimeError("audit down")

    with pytest.raises(RuntimeError, match="audit down"):
        a.publish_atomically("t", [OutRecord(None, b"a")], boom)
    assert p.calls == ["begin", "abort"]
    a.publish_atomically("t", [OutRecord(None, b"b")])  # same producer again
    assert p.calls[-2:] == ["begin", "commit"]


def test_a_producer_whose_abort_fails_is_replaced() -> None:
    broken, fresh = FakeProducer(fail_commit=True, fail_abort=True), FakeProducer()
    a = adapter_with([broken, fresh])
    with pytest.raises(KafkaUnavailable):
        a.publish_atomically("t", [OutRecord(None, b"a")])
    assert broken.calls == ["begin", "commit", "abort", "purge"]
    a.publish_atomically("t", [OutRecord(None, b"b")])
    assert fresh.calls == ["begin", "commit"]
    assert broken.calls[-1] == "purge"  # never used again


class RefusingProducer(FakeProducer):
    """Reports every record as too large for the broker."""

    def produce(self, topic: str, value: bytes, key: Any, **kw: Any) -> None:
        msg = FakeMessage(0, -1)
        self.pending.append(
            lambda: kw["on_delivery"](KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), msg)
        )


def test_parts_of_one_transaction_are_answered_in_order() -> None:
    p = FakeProducer()
    a = adapter_with([p])
    a._known.add("u")
    got = a.publish_transaction(
        [("t", [OutRecord(None, b"a")]), ("u", [OutRecord(None, b"b"), OutRecord(None, b"c")])]
    )
    assert got == [[Position(0, 0)], [Position(0, 1), Position(0, 2)]]
    assert p.calls == ["begin", "commit"]


def test_a_refused_record_is_the_sender_s_fault_and_its_producer_is_replaced() -> None:
    refusing, fresh = RefusingProducer(), FakeProducer()
    a = adapter_with([refusing, fresh])
    with pytest.raises(InvalidInput) as exc:
        a.publish_atomically("t", [OutRecord(None, b"huge")])
    assert exc.value.code == "record_refused"
    assert refusing.calls == ["begin", "abort", "purge"]
    a.publish_atomically("t", [OutRecord(None, b"b")])
    assert fresh.calls == ["begin", "commit"]

"""Asking the real broker whether a crashed publish committed (both Kafka clients): a
committed batch, an aborted one (read_committed skips it), one followed by nothing, and one
whose transaction is still open."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from dataplane.outcome import REQUEST_HEADER, KafkaOutcomes, Outcome
from exchange.kafka import KafkaClient, open_kafka
from exchange.kafka.port import KafkaPort, OutRecord, Position
from tests.integration.test_kafka_contract import BACKENDS
from tests.support.kafka import security_for

pytestmark = pytest.mark.kafka


class Abort(Exception):
    pass


@pytest.fixture(params=BACKENDS)
def kafka(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[KafkaPort]:
    backend: KafkaClient = request.param
    k = open_kafka(
        kafka_bootstrap,
        f"outcome-{uuid.uuid4().hex[:6]}",
        backend,
        security=security_for(kafka_bootstrap),
    )
    yield k
    k.close()


def batch(rid: str, n: int = 2) -> list[OutRecord]:
    first = OutRecord(None, b"first", [(REQUEST_HEADER, rid.encode())])
    return [first] + [OutRecord(None, b"more") for _ in range(n - 1)]


def aborted(kafka: KafkaPort, topic: str, rid: str) -> Position:
    seen: list[Position] = []

    def fail(positions: list[Position]) -> None:
        seen.extend(positions)
        raise Abort

    with pytest.raises(Abort):
        kafka.publish_atomically(topic, batch(rid), fail)
    return seen[0]


def test_committed_aborted_and_open_are_told_apart(kafka: KafkaPort) -> None:
    topic = f"outcome-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, 2)
    outcomes = KafkaOutcomes(kafka)
    committed = kafka.publish_atomically(topic, batch("c1"))[0]
    assert outcomes.outcome(topic, committed, "c1") is Outcome.COMMITTED
    assert outcomes.outcome(topic, committed, "someone-else") is Outcome.ABORTED

    last = aborted(kafka, topic, "a1")  # nothing after it: only the abort marker
    assert outcomes.outcome(topic, last, "a1") is Outcome.ABORTED
    kafka.publish_atomically(topic, batch("c2"))
    assert outcomes.outcome(topic, aborted(kafka, topic, "a2"), "a2") is Outcome.ABORTED

    # A transaction held open: undecided until it ends.
    holding, release = threading.Event(), threading.Event()
    at: list[Position] = []

    def hold(positions: list[Position]) -> None:
        at.extend(positions)
        holding.set()
        release.wait(20)

    t = threading.Thread(target=lambda: kafka.publish_atomically(topic, batch("o1"), hold))
    t.start()
    assert holding.wait(20)
    try:
        assert outcomes.outcome(topic, at[0], "o1") is Outcome.UNDECIDED
    finally:
        release.set()
        t.join(30)
    assert outcomes.outcome(topic, at[0], "o1") is Outcome.COMMITTED

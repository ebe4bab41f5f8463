"""Idempotency keys never stick: a claim a crash left unsettled is resolved from Kafka (at
once if it staged its answer, else once older than the bound) — real database, in-memory
Kafka with real offset semantics."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dataplane.group_commit import GroupCommitter
from dataplane.idempotency import ClaimLost, IdempotencyStore, Staged
from dataplane.outcome import KafkaOutcomes, Outcome, decide
from dataplane.publish import Batch, NewRecord, Publisher
from exchange.errors import Conflict, KafkaUnavailable
from exchange.kafka.port import InRecord, Position
from tests.support.scenario import PERSON_SCHEMA, person
from tests.unit.dataplane.world import NOW, Crash, World, build_world, principal

PUBLISHER = principal("health", "publisher")
BOUND = timedelta(seconds=120)


@pytest.fixture
def w(tmp_path: Path) -> World:
    return build_world(tmp_path)


def at(w: World, later: timedelta) -> None:
    w.publisher.idempotency.clock = lambda: NOW + later


def dies_before_settling(w: World) -> None:
    """The gateway dies right after Kafka answered: neither settle nor release runs."""

    def crash(*_: Any) -> None:
        raise Crash("gateway killed")

    w.publisher.idempotency.settle = crash  # type: ignore[method-assign]
    w.publisher.idempotency.release = crash  # type: ignore[method-assign]


def restarted(w: World) -> World:
    """A new gateway process over the same database and the same Kafka."""
    old = w.publisher
    store = IdempotencyStore(
        old.idempotency.sessions, outcomes=KafkaOutcomes(w.kafka), clock=lambda: NOW
    )
    w.publisher = Publisher(
        schemas=old.schemas,
        catalog=old.catalog,
        sealer=old.sealer,
        committer=GroupCommitter(w.kafka, w.audit, staging=store),
        idempotency=store,
    )
    return w


def publish(w: World, entry: Any, n: int = 1) -> tuple[dict[str, Any], bool]:
    batch = Batch([NewRecord(None, person(i)) for i in range(n)])
    return w.publisher.publish(PUBLISHER, entry, batch, idempotency_key="k1", request_hash="h1")


def test_committed_then_crashed_replays_the_staged_answer(w: World, tmp_path: Path) -> None:
    entry = w.topic(PERSON_SCHEMA)
    publish(w, entry)  # something before it, so offsets are not all zero
    w.publisher.publish(PUBLISHER, entry, Batch([NewRecord(None, person(9))]), idempotency_key="k0")
    dies_before_settling(w)
    with pytest.raises(Crash):
        w.publisher.publish(
            PUBLISHER, entry, Batch([NewRecord(None, person(i)) for i in range(3)]),
            idempotency_key="k2", request_hash="h2",
        )  # fmt: skip
    again = restarted(w)
    answer, replayed = again.publisher.publish(
        PUBLISHER, entry, Batch([NewRecord(None, person(i)) for i in range(3)]),
        idempotency_key="k2", request_hash="h2",
    )  # fmt: skip
    assert replayed
    assert answer["offsets"] == [{"partition": 0, "offset": o} for o in (2, 3, 4)]
    assert len(w.kafka.logs[entry.topic]) == 5, "published twice"
    # Settled now: a further retry is a plain replay.
    assert again.publisher.publish(
        PUBLISHER, entry, Batch([NewRecord(None, person(i)) for i in range(3)]),
        idempotency_key="k2", request_hash="h2",
    ) == (answer, True)  # fmt: skip


def test_aborted_then_crashed_is_undecided_while_open_then_publishes_once(
    w: World, tmp_path: Path
) -> None:
    entry = w.topic(PERSON_SCHEMA)
    dies_before_settling(w)
    w.kafka.crash_before_commit = True
    with pytest.raises(Crash):
        publish(w, entry, 2)
    w.kafka.crash_before_commit = False
    again = restarted(w)
    with pytest.raises(Conflict, match="in progress"):  # its transaction is still open
        publish(again, entry, 2)
    w.kafka.time_out_open()  # the transaction timeout aborts it
    answer, replayed = publish(again, entry, 2)
    assert not replayed
    assert answer["offsets"] == [{"partition": 0, "offset": 2}, {"partition": 0, "offset": 3}]
    assert len(w.kafka.logs[entry.topic]) == 2
    assert publish(again, entry, 2) == (answer, True)


def test_a_failed_commit_keeps_the_claim_and_the_retry_learns_it_aborted(w: World) -> None:
    entry = w.topic(PERSON_SCHEMA)
    w.kafka.fail_commit = True  # the commit's outcome is unknown to the gateway
    with pytest.raises(KafkaUnavailable):
        publish(w, entry)
    w.kafka.fail_commit = False
    answer, replayed = publish(w, entry)
    assert not replayed and answer["offsets"] == [{"partition": 0, "offset": 1}]
    assert len(w.kafka.logs[entry.topic]) == 1


def test_a_claim_that_never_reached_kafka_is_taken_over_after_the_bound(w: World) -> None:
    entry = w.topic(PERSON_SCHEMA)
    w.publisher.idempotency.claim(PUBLISHER.client_id, "k1", "h1")  # then the gateway died
    with pytest.raises(Conflict, match="in progress"):  # it may still be running
        publish(w, entry)
    at(w, BOUND + timedelta(seconds=1))
    _, replayed = publish(w, entry)
    assert not replayed and len(w.kafka.logs[entry.topic]) == 1


def test_a_slow_owner_whose_claim_was_taken_over_cannot_commit(w: World) -> None:
    store = w.publisher.idempotency
    slow = store.claim(PUBLISHER.client_id, "k1", "h1")
    at(w, BOUND + timedelta(seconds=1))
    taken = store.claim(PUBLISHER.client_id, "k1", "h1")
    assert taken.request_id and taken.request_id != slow.request_id
    with pytest.raises(ClaimLost):  # inside its open transaction: it aborts
        store.stage_many([Staged(PUBLISHER.client_id, "k1", slow.request_id, {"offsets": []})])
    store.release(PUBLISHER.client_id, "k1", slow.request_id)  # the loser's clean-up
    store.stage_many([Staged(PUBLISHER.client_id, "k1", taken.request_id, {"offsets": []})])


def test_another_request_s_record_at_the_position_means_aborted() -> None:
    def rec(offset: int, rid: bytes) -> InRecord:
        return InRecord("t", 0, offset, 0, None, b"", [("exchange.request", rid)])

    p = Position(0, 7)
    assert decide(p, "abc", 7, None) is Outcome.UNDECIDED
    assert decide(p, "abc", 8, rec(7, b"abc")) is Outcome.COMMITTED
    assert decide(p, "abc", 8, rec(7, b"xyz")) is Outcome.ABORTED
    assert decide(p, "abc", 9, rec(8, b"abc")) is Outcome.ABORTED
    assert decide(p, "abc", 8, None) is Outcome.ABORTED

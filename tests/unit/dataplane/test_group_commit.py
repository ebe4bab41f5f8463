"""Group commit across requests: many concurrent publishes share one Kafka transaction and one
audit append, each still answered with its own positions and failed only for its own faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pytest

from dataplane.group_commit import GroupCommitter
from dataplane.publish import Batch, BatchRejected, NewRecord
from exchange.auditing import AuditRecord
from exchange.errors import DependencyUnavailable, KafkaUnavailable, NotFound
from exchange.kafka.port import OutRecord, Position
from tests.support.scenario import PERSON_SCHEMA, person
from tests.unit.dataplane.world import FakeKafka, World, build_world, principal

PUBLISHER = principal("health", "publisher")


class RecordingSink:
    """An audit sink that keeps each append_many call apart (to count group appends)."""

    def __init__(self) -> None:
        self.calls: list[list[AuditRecord]] = []
        self.down = False
        self._lock = threading.Lock()

    def append(self, record: AuditRecord) -> None:
        self.append_many([record])

    def append_many(self, records: Sequence[AuditRecord]) -> None:
        if self.down:
            raise DependencyUnavailable("audit log unavailable")
        with self._lock:
            self.calls.append(list(records))

    def events(self, kind: str) -> list[AuditRecord]:
        return [r for call in self.calls for r in call if r.type == kind]


class GatedKafka(FakeKafka):
    """Holds the first transaction open until ``release`` is set, so followers pile up."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def publish_transaction(
        self,
        parts: Sequence[tuple[str, Sequence[OutRecord]]],
        before_commit: Callable[[list[list[Position]]], None] | None = None,
    ) -> list[list[Position]]:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(10)
        return super().publish_transaction(parts, before_commit)


def event_for(name: str) -> Callable[[str, list[Position]], AuditRecord]:
    def event(kind: str, positions: list[Position]) -> AuditRecord:
        return AuditRecord(kind, actor=name, data={"offsets": [p.offset for p in positions]})

    return event


def records(name: str, n: int) -> list[OutRecord]:
    return [OutRecord(f"{name}-{i}".encode(), b"v") for i in range(n)]


def grouped(
    kafka: GatedKafka,
    committer: GroupCommitter,
    requests: list[tuple[str, str, int]],
    mode: str = "commit",
) -> dict[str, Future[list[Position]]]:
    """Start one request alone (held in its transaction), queue ``requests`` behind it, then
    let everything go: the queued ones are taken as one group. ``mode``: each request waits
    in its own thread (``commit``), is submitted for a future (``submit``), or alternately."""
    pool = ThreadPoolExecutor(len(requests) + 1)

    def join(i: int, topic: str, name: str, n: int) -> Future[list[Position]]:
        if mode == "submit" or (mode == "mixed" and i % 2):
            return committer.submit(topic, records(name, n), event_for(name))
        return pool.submit(committer.commit, topic, records(name, n), event_for(name))

    futures = {"first": join(0, "t.first", "first", 1)}
    assert kafka.entered.wait(10)
    for i, (name, topic, n) in enumerate(requests, start=1):
        futures[name] = join(i, topic, name, n)
    deadline = time.monotonic() + 10
    while committer.waiting() < len(requests):
        assert time.monotonic() < deadline, "followers never queued"
        time.sleep(0.001)
    kafka.release.set()
    wait(futures.values(), timeout=10)
    pool.shutdown(wait=True)
    return futures


MODES = pytest.mark.parametrize("mode", ["commit", "submit", "mixed"])


def test_a_lone_request_commits_at_once_in_its_own_transaction() -> None:
    kafka, sink = FakeKafka(), RecordingSink()
    positions = GroupCommitter(kafka, sink).commit("t", records("a", 2), event_for("a"))
    assert positions == [Position(0, 0), Position(0, 1)]
    assert kafka.transactions == [["t"]] and len(sink.calls) == 1


@MODES
@pytest.mark.parametrize("lanes", [1, 2])
def test_queued_requests_share_one_transaction_and_one_audit_append(lanes: int, mode: str) -> None:
    kafka, sink = GatedKafka(), RecordingSink()
    committer = GroupCommitter(kafka, sink, lanes=lanes)
    futures = grouped(kafka, committer, [("a", "t.x", 2), ("b", "t.y", 1), ("c", "t.x", 3)], mode)
    assert kafka.transactions == [["t.first"], ["t.x", "t.y", "t.x"]]
    assert [o.offset for o in futures["a"].result()] == [0, 1]
    assert [o.offset for o in futures["b"].result()] == [0]
    assert [o.offset for o in futures["c"].result()] == [2, 3, 4]
    assert [r.key for r in kafka.logs["t.x"]] == [b"a-0", b"a-1", b"c-0", b"c-1", b"c-2"]
    # one append for the lone first request, one for the whole group, each member its own event
    assert [[e.actor for e in call] for call in sink.calls] == [["first"], ["a", "b", "c"]]
    assert sink.calls[1][2].data == {"offsets": [2, 3, 4]}
    assert committer.stats.groups == 2 and committer.stats.requests == 4


@MODES
@pytest.mark.parametrize("lanes", [1, 2])
def test_groups_are_bounded_by_records(lanes: int, mode: str) -> None:
    kafka, sink = GatedKafka(), RecordingSink()
    committer = GroupCommitter(kafka, sink, max_records=4, lanes=lanes)
    grouped(kafka, committer, [("a", "t", 3), ("b", "t", 1), ("c", "t", 1), ("d", "t", 9)], mode)
    # a+b fill a group; c goes next; d alone exceeds the bound and still goes (alone)
    assert [len(t) for t in kafka.transactions] == [1, 2, 1, 1]
    assert len(kafka.logs["t"]) == 14


@MODES
@pytest.mark.parametrize("lanes", [1, 2])
def test_a_bad_member_fails_alone_and_its_neighbours_commit(lanes: int, mode: str) -> None:
    kafka, sink = GatedKafka(), RecordingSink()
    kafka.missing = {"t.gone"}
    committer = GroupCommitter(kafka, sink, lanes=lanes)
    futures = grouped(kafka, committer, [("a", "t", 1), ("bad", "t.gone", 1), ("c", "t", 2)], mode)
    with pytest.raises(NotFound):
        futures["bad"].result()
    assert [o.offset for o in futures["a"].result()] == [0]
    assert [o.offset for o in futures["c"].result()] == [1, 2]
    # the group failed as one, then its members went one by one
    assert kafka.transactions[1:] == [["t", "t.gone", "t"], ["t"], ["t.gone"], ["t"]]
    assert [e.actor for e in sink.events("record.published")] == ["first", "a", "c"]


@MODES
@pytest.mark.parametrize("lanes", [1, 2])
def test_an_audit_outage_aborts_the_whole_group_and_nothing_is_visible(
    lanes: int, mode: str
) -> None:
    kafka, sink = GatedKafka(), RecordingSink()
    committer = GroupCommitter(kafka, sink, lanes=lanes)
    sink.down = True
    futures = grouped(kafka, committer, [("a", "t", 1), ("b", "t", 1)], mode)
    for f in futures.values():
        with pytest.raises(DependencyUnavailable):
            f.result()
    assert kafka.logs == {}
    assert len(kafka.transactions) == 2  # not retried one by one: no member is at fault


@MODES
@pytest.mark.parametrize("lanes", [1, 2])
def test_a_kafka_outage_fails_every_member_and_audits_the_abort_once(lanes: int, mode: str) -> None:
    kafka, sink = GatedKafka(), RecordingSink()
    committer = GroupCommitter(kafka, sink, lanes=lanes)
    kafka.fail_commit = True
    futures = grouped(kafka, committer, [("a", "t", 1), ("b", "t", 2)], mode)
    for f in futures.values():
        with pytest.raises(KafkaUnavailable):
            f.result()
    assert kafka.logs == {} and len(kafka.transactions) == 2
    assert [[e.type for e in c] for c in sink.calls[-2:]] == [
        ["record.published", "record.published"],
        ["record.publish_aborted", "record.publish_aborted"],
    ]


@pytest.fixture
def w(tmp_path: Path) -> World:
    return build_world(tmp_path)


@pytest.mark.parametrize("lanes", [1, 3])
def test_many_threads_publishing_each_get_their_own_distinct_positions(
    w: World, lanes: int
) -> None:
    """32 clients through the whole use case (validate, seal, encode, group commit); a few
    send an invalid record and only they fail, with 422, before any grouping."""
    entry = w.topic(PERSON_SCHEMA)
    w.kafka.delay_s = 0.002  # a commit in flight long enough for followers to queue
    sink = RecordingSink()
    w.publisher.committer = GroupCommitter(w.kafka, sink, lanes=lanes)

    def publish(client: int, n: int) -> Any:
        size = 1 + (client + n) % 3
        recs = [NewRecord(f"c{client}-r{n}-{i}", person(client * 1000 + n)) for i in range(size)]
        if client % 8 == 7 and n == 1:
            recs[-1] = NewRecord(None, {**person(1), "income": "lots"})
        return w.publisher.publish(PUBLISHER, entry, Batch(recs))[0], recs

    with ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(publish, c, n) for c in range(32) for n in range(4)]
    answered, rejected = [], 0
    for f in futures:
        try:
            answered.append(f.result())
        except BatchRejected:
            rejected += 1
    assert rejected == 4 and len(answered) == 124
    log = w.kafka.logs[entry.topic]
    seen: set[int] = set()
    for result, recs in answered:
        offsets = [o["offset"] for o in result["offsets"]]
        assert [log[o].key for o in offsets] == [r.key.encode() for r in recs]  # type: ignore[union-attr]
        seen.update(offsets)
    assert seen == set(range(len(log)))  # distinct, and nothing written that nobody was told
    published = sink.events("record.published")
    assert len(published) == 124
    assert len(sink.calls) == len(w.kafka.transactions) < 124  # one append per group


# -- lanes: groups pipelined on several transactional producers -------------------------------


class PipelinedKafka(FakeKafka):
    """Transactions on several producers at once, as Kafka runs them: offsets are taken when
    the records are produced, the records become visible at commit. ``hold_first_produce``
    keeps the first transaction from producing until set. ``trail`` notes each record's
    visibility, and the sink notes each audit append there, so tests can check the order."""

    def __init__(self, trail: list[tuple[str, str]]) -> None:
        super().__init__()
        self.trail = trail
        self.hold_first_produce: threading.Event | None = None

    def publish_transaction(
        self,
        parts: Sequence[tuple[str, Sequence[OutRecord]]],
        before_commit: Callable[[list[list[Position]]], None] | None = None,
    ) -> list[list[Position]]:
        with self._lock:
            self.transactions.append([t for t, _ in parts])
            first = len(self.transactions) == 1
        if first and self.hold_first_produce is not None:
            assert self.hold_first_produce.wait(10)
        with self._lock:  # produce
            for topic, _ in parts:
                if topic in self.missing:
                    raise NotFound(f"Kafka topic {topic} does not exist")
            positions: list[list[Position]] = []
            for topic, recs in parts:
                base = self.next.get(topic, 0)
                positions.append([Position(0, base + i) for i in range(len(recs))])
                self.next[topic] = base + len(recs)
        if before_commit is not None:
            before_commit(positions)  # raising aborts: nothing visible, offsets used up
        with self._lock:  # commit
            for (topic, recs), ps in zip(parts, positions, strict=True):
                self.logs.setdefault(topic, []).extend(recs)
                self.at.setdefault(topic, []).extend(p.offset for p in ps)
                self.trail += [("visible", r.key.decode()) for r in recs if r.key]
        return positions


class HeldSink(RecordingSink):
    """Holds the first audit append until ``release`` is set."""

    def __init__(self, trail: list[tuple[str, str]]) -> None:
        super().__init__()
        self.trail = trail
        self.entered = threading.Event()
        self.release = threading.Event()

    def append_many(self, records: Sequence[AuditRecord]) -> None:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(10)
        super().append_many(records)
        self.trail += [("audited", r.actor) for r in records]


def audited_before_visible(trail: list[tuple[str, str]]) -> bool:
    """Every record ("<actor>-<i>") became visible after its request's audit event."""
    audited: set[str] = set()
    for what, name in trail:
        if what == "audited":
            audited.add(name)
        elif name.rsplit("-", 1)[0] not in audited:
            return False
    return True


@pytest.mark.parametrize("lanes", [1, 2])
def test_with_two_lanes_a_group_commits_while_the_one_before_is_in_its_audit_append(
    lanes: int,
) -> None:
    trail: list[tuple[str, str]] = []
    kafka, sink = PipelinedKafka(trail), HeldSink(trail)
    committer = GroupCommitter(kafka, sink, lanes=lanes)
    pool = ThreadPoolExecutor(2)
    a = pool.submit(committer.commit, "t", records("a", 1), event_for("a"))
    assert sink.entered.wait(10)  # a's records are produced; its audit append is held
    b = pool.submit(committer.commit, "t", records("b", 2), event_for("b"))
    if lanes == 2:
        assert [p.offset for p in b.result(timeout=10)] == [1, 2]  # a is still held
        assert not a.done()
    else:
        time.sleep(0.2)
        assert not b.done() and len(kafka.transactions) == 1  # b waits for a's whole cycle
    sink.release.set()
    assert [p.offset for p in a.result(timeout=10)] == [0]
    assert [p.offset for p in b.result(timeout=10)] == [1, 2]
    pool.shutdown()
    assert audited_before_visible(trail) and len(trail) == 5
    assert sorted(zip(kafka.at["t"], [r.key for r in kafka.logs["t"]], strict=True)) == [
        (0, b"a-0"),
        (1, b"b-0"),
        (2, b"b-1"),
    ]


def test_with_lanes_the_next_group_forms_behind_the_one_producing() -> None:
    """A free lane does not start a group while another is producing: followers accumulate
    and go as one group once those records are produced (groups as large as with one lane)."""
    trail: list[tuple[str, str]] = []
    kafka, sink = PipelinedKafka(trail), RecordingSink()
    kafka.hold_first_produce = threading.Event()
    committer = GroupCommitter(kafka, sink, lanes=3)
    pool = ThreadPoolExecutor(4)
    first = pool.submit(committer.commit, "t", records("first", 1), event_for("first"))
    deadline = time.monotonic() + 10
    while not kafka.transactions:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    others = [pool.submit(committer.commit, "t", records(n, 1), event_for(n)) for n in "abc"]
    while committer.waiting() < 3:
        assert time.monotonic() < deadline, "followers never queued"
        time.sleep(0.001)
    time.sleep(0.1)
    assert len(kafka.transactions) == 1
    kafka.hold_first_produce.set()
    assert [p.offset for p in first.result(timeout=10)] == [0]
    assert sorted(f.result(timeout=10)[0].offset for f in others) == [1, 2, 3]
    pool.shutdown()
    assert kafka.transactions == [["t"], ["t", "t", "t"]]
    assert [[e.actor for e in call] for call in sink.calls] == [["first"], ["a", "b", "c"]]


def test_with_lanes_a_bad_request_fails_alone_while_another_group_is_held() -> None:
    trail: list[tuple[str, str]] = []
    kafka, sink = PipelinedKafka(trail), HeldSink(trail)
    kafka.missing = {"t.gone"}
    committer = GroupCommitter(kafka, sink, lanes=2)
    pool = ThreadPoolExecutor(4)
    held = pool.submit(committer.commit, "t", records("held", 1), event_for("held"))
    assert sink.entered.wait(10)
    good = pool.submit(committer.commit, "t", records("good", 1), event_for("good"))
    bad = pool.submit(committer.commit, "t.gone", records("bad", 1), event_for("bad"))
    later = pool.submit(committer.commit, "t", records("later", 2), event_for("later"))
    with pytest.raises(NotFound):
        bad.result(timeout=10)
    assert len(good.result(timeout=10)) == 1 and len(later.result(timeout=10)) == 2
    assert not held.done()
    sink.release.set()
    assert [p.offset for p in held.result(timeout=10)] == [0]
    pool.shutdown()
    assert audited_before_visible(trail)
    assert sorted(e.actor for e in sink.events("record.published")) == ["good", "held", "later"]
    assert sorted(kafka.at["t"]) == [0, 1, 2, 3]
    assert committer.stats.requests == 4


def test_a_submitted_request_leads_on_the_committer_s_thread_and_cannot_be_cancelled() -> None:
    kafka, sink = GatedKafka(), RecordingSink()
    committer = GroupCommitter(kafka, sink)
    leaders: list[str] = []
    event = event_for("a")

    def named(kind: str, positions: list[Position]) -> AuditRecord:
        leaders.append(threading.current_thread().name)
        return event(kind, positions)

    future = committer.submit("t", records("a", 2), named)  # returns while its group is held
    assert kafka.entered.wait(10) and not future.done()
    assert not future.cancel()  # a caller that stops waiting leaves the group intact
    kafka.release.set()
    assert future.result(timeout=10) == [Position(0, 0), Position(0, 1)]
    assert leaders and leaders[0].startswith("group-commit")

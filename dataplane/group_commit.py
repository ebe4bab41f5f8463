"""Group commit: concurrent publish requests share one Kafka transaction and one audit append.

Each request is validated, sealed and encoded on its own thread first, so a bad record fails
only its own request; then it joins the queue here. A request that finds no commit in flight
leads: it takes everything queued (bounded by records and bytes), writes it in one
transaction, appends every member's ``record.published`` event with one ``append_many`` while
the transaction is still open (durable before visible), commits, answers every member with
its own positions and hands the lead to the next waiter. An idle committer never waits for
company: a lone request goes at once; followers accumulate while a commit is in flight.

``lanes`` > 1 pipelines the groups: up to that many are in flight at once, each on its own
transactional producer, but only one is *producing* (from taking its members to the broker's
acknowledgement of its records). The next group is taken when the one before has been
produced, so it overlaps that group's audit append and transaction commit, and followers keep
accumulating meanwhile: groups stay as large as with one lane (bench/RESULTS.md).

A member joins either blocking (:meth:`GroupCommitter.commit`, its own thread waits and leads
when its turn comes) or not (:meth:`GroupCommitter.submit`: it gets a future, resolved from the
leader's thread; when such a member must lead, its group runs on the committer's own thread).
The gateway's publish fast path submits, so no request thread sits blocked on a commit.

Members publishing under an idempotency key stage their answers (``staging``) inside the
same open transaction, before the audit append, so a crash after commit leaves the answer
recoverable (:mod:`dataplane.idempotency`).

Failures: an audit or Kafka outage fails the whole group (503, nothing visible); anything
else could be one member's doing, so the members are then retried one by one and a good
request is not failed by a bad neighbour.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from dataplane.idempotency import Staged
from dataplane.ports import TransactionsPort
from exchange import tracing
from exchange.auditing import AuditRecord, AuditSink
from exchange.errors import DependencyUnavailable, ExchangeError, KafkaUnavailable
from exchange.kafka.port import OutRecord, Position

log = logging.getLogger(__name__)

# Builds a member's audit event ("record.published" / "record.publish_aborted") for positions.
EventFor = Callable[[str, list[Position]], AuditRecord]

# Builds a member's staged idempotency answer from its positions.
StageFor = Callable[[list[Position]], Staged]


class StagingPort(Protocol):
    def stage_many(self, staged: Sequence[Staged]) -> None: ...


# Failures no single member causes: the group fails as one, nothing is retried.
SHARED_FAILURES = (KafkaUnavailable, DependencyUnavailable)


@dataclass(eq=False)
class _Member:
    topic: str
    records: Sequence[OutRecord]
    event: EventFor
    size: int
    stage: StageFor | None = None
    wake: threading.Event = field(default_factory=threading.Event)
    future: Future[list[Position]] | None = None  # submitted: resolved instead of woken
    context: contextvars.Context | None = None  # submitted: its request's, to lead in
    promoted: bool = False  # handed a lane: lead the next group
    done: bool = False
    positions: list[Position] | None = None
    error: BaseException | None = None


@dataclass
class GroupStats:
    groups: int = 0  # transactions attempted (retries one by one count each)
    requests: int = 0  # requests answered


class GroupCommitter:
    def __init__(
        self,
        kafka: TransactionsPort,
        audit: AuditSink,
        *,
        max_records: int = 5000,
        max_bytes: int = 8 * 1024 * 1024,
        lanes: int = 1,
        staging: StagingPort | None = None,
    ) -> None:
        self.kafka, self.audit, self.staging = kafka, audit, staging
        self.max_records, self.max_bytes = max_records, max_bytes
        self.lanes = lanes  # groups in flight at once (each holds a transactional producer)
        self.stats = GroupStats()
        self._queue: deque[_Member] = deque()
        self._lock = threading.Lock()
        self._active = 0  # lanes held by a leader (running, or promoted and about to)
        self._producing = False  # a leader is taking or producing its group
        self._leaders: ThreadPoolExecutor | None = None  # leads for submitted members

    def commit(
        self,
        topic: str,
        records: Sequence[OutRecord],
        event: EventFor,
        stage: StageFor | None = None,
    ) -> list[Position]:
        """Write ``records`` to ``topic`` atomically with its audit event (from ``event``)
        and its staged idempotency answer (from ``stage``); returns their positions once the
        group holding them has committed."""
        size = sum(len(r.value) + len(r.key or b"") for r in records)
        mine = _Member(topic, records, event, size, stage)
        with self._lock:
            self._queue.append(mine)
            lead = self._claim()
        while True:
            if lead:
                self._lead()
            with self._lock:
                if mine.done:
                    break
                lead, mine.promoted = mine.promoted, False
                if not lead:
                    mine.wake.clear()
            if not lead:
                mine.wake.wait()  # until answered, or promoted to lead the next group
        if mine.error is not None:
            raise mine.error
        assert mine.positions is not None
        return mine.positions

    def submit(
        self,
        topic: str,
        records: Sequence[OutRecord],
        event: EventFor,
        stage: StageFor | None = None,
    ) -> Future[list[Position]]:
        """As :meth:`commit`, without waiting: the future is resolved (from the leader's
        thread) with the positions once the group holding the records has committed, or
        with its error. When this member must lead, its group runs on the committer's own
        thread."""
        size = sum(len(r.value) + len(r.key or b"") for r in records)
        future: Future[list[Position]] = Future()
        future.set_running_or_notify_cancel()  # cannot be cancelled: the group decides
        context = contextvars.copy_context()  # a group it leads is traced as its request's
        mine = _Member(topic, records, event, size, stage, future=future, context=context)
        with self._lock:
            self._queue.append(mine)
            lead = self._claim()
        if lead:
            self._lead_for(mine)
        return future

    def _lead_for(self, mine: _Member) -> None:
        """Lead the next group on the committer's thread, for a submitted member."""
        with self._lock:
            if self._leaders is None:  # at most ``lanes`` lead at once; one more finishing
                self._leaders = ThreadPoolExecutor(
                    self.lanes + 1, thread_name_prefix="group-commit"
                )
            leaders = self._leaders
        assert mine.context is not None
        leaders.submit(mine.context.copy().run, self._lead_submitted, mine)

    def _lead_submitted(self, mine: _Member) -> None:
        with self._lock:
            mine.promoted = False  # leading now: another may be promoted after this group
        self._lead()  # answers mine through _wake if its group was this one, else later

    def _wake(self, m: _Member) -> None:
        """Tell a member it is answered or promoted (the caller does not hold the lock)."""
        if m.future is None:
            m.wake.set()
        elif m.done:
            if m.error is not None:
                m.future.set_exception(m.error)
            else:
                assert m.positions is not None
                m.future.set_result(m.positions)
        elif m.promoted:
            self._lead_for(m)

    def waiting(self) -> int:
        """Requests queued behind the commits in flight."""
        with self._lock:
            return len(self._queue)

    def _claim(self) -> bool:
        """Take a lane and the produce stage if both are free (the caller holds the lock)."""
        if self._producing or self._active >= self.lanes:
            return False
        self._active += 1
        self._producing = True
        return True

    def _promote(self) -> _Member | None:
        """The first waiter not yet promoted, given a lane if one is free (under the lock)."""
        successor = next((m for m in self._queue if not m.promoted), None)
        if successor is None or not self._claim():
            return None
        successor.promoted = True
        return successor

    def _lead(self) -> None:
        """Commit one group from the queue's head, letting the next group start as soon as
        this one's records are produced; then give this lane back."""
        with self._lock:
            group = self._take()  # empty if another lane took everything meanwhile
        stage_open = True

        def produced() -> None:  # this group's records are with the broker (or it failed)
            nonlocal stage_open
            if not stage_open:
                return
            stage_open = False
            with self._lock:
                self._producing = False
                successor = self._promote()
            if successor is not None:
                self._wake(successor)

        try:
            if group:
                self._run(group, produced)
        finally:
            produced()
            with self._lock:
                for m in group:  # whatever happened, nobody is left waiting
                    if m.positions is None and m.error is None:
                        m.error = DependencyUnavailable("publish did not complete")
                    m.done = True
                self.stats.requests += len(group)
                self._active -= 1
                successor = self._promote()
            if successor is not None:  # first: the next group need not wait for the answers
                self._wake(successor)
            for m in group:
                self._wake(m)

    def _take(self) -> list[_Member]:
        """The queue's head, bounded; always at least one member (the leader's own)."""
        group: list[_Member] = []
        records = size = 0
        while self._queue:
            head = self._queue[0]
            if group and (
                records + len(head.records) > self.max_records or size + head.size > self.max_bytes
            ):
                break
            group.append(self._queue.popleft())
            records, size = records + len(head.records), size + head.size
        return group

    def _run(self, group: list[_Member], produced: Callable[[], None] = lambda: None) -> None:
        try:
            answers = self._transaction(group, produced)
        except SHARED_FAILURES as exc:
            for m in group:
                m.error = exc
            return
        except Exception as exc:
            produced()  # the retries below need not hold up the next group
            if len(group) == 1:
                group[0].error = exc
                return
            log.info(
                "group of %d publishes failed (%s); retrying them one by one",
                len(group),
                type(exc).__name__,
            )
            for m in group:
                self._run([m])
            return
        for m, positions in zip(group, answers, strict=True):
            m.positions = positions

    def _transaction(
        self, group: list[_Member], produced: Callable[[], None] = lambda: None
    ) -> list[list[Position]]:
        with self._lock:
            self.stats.groups += 1
        staged: list[list[Position]] = []

        def audit_first(positions: list[list[Position]]) -> None:
            produced()  # the next group may start producing on another producer now
            # Durable before visible: if the audit log cannot take the events, the
            # transaction is aborted and every member gets 503 with nothing published.
            staged[:] = positions
            answers = [m.stage(p) for m, p in zip(group, positions, strict=True) if m.stage]
            if answers:
                if self.staging is None:
                    raise DependencyUnavailable("idempotency staging is not configured")
                self.staging.stage_many(answers)
            with tracing.span("publish.audit", events=len(group)):
                self.audit.append_many(
                    [m.event("record.published", p) for m, p in zip(group, positions, strict=True)]
                )

        try:
            with tracing.span(
                "publish.kafka", requests=len(group), records=sum(len(m.records) for m in group)
            ):
                return self.kafka.publish_transaction(
                    [(m.topic, m.records) for m in group], audit_first
                )
        except KafkaUnavailable:
            if staged:  # audited, then the commit failed: say so in the log too
                with contextlib.suppress(ExchangeError):
                    self.audit.append_many(
                        [
                            m.event("record.publish_aborted", p)
                            for m, p in zip(group, staged, strict=True)
                        ]
                    )
            raise

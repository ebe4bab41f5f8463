"""Group commit: concurrent publish requests share one Kafka transaction and one audit append.

Each request is validated, sealed and encoded on its own thread first, so a bad record fails
only its own request; then it joins the queue here. A request that finds no commit in flight
leads: it takes everything queued (bounded by records and bytes), writes it in one
transaction, appends every member's ``record.published`` event with one ``append_many`` while
the transaction is still open (durable before visible), commits, answers every member with
its own positions and hands the lead to the next waiter. An idle committer never waits for
company: a lone request goes at once; followers accumulate while a commit is in flight.
``lanes`` > 1 lets that many groups be in flight at once (each on its own transactional
producer); on the 2-core bench machine one lane was fastest on both Kafka clients (fewer,
larger transactions; bench/RESULTS.md).

Members publishing under an idempotency key stage their answers (``staging``) inside the
same open transaction, before the audit append, so a crash after commit leaves the answer
recoverable (:mod:`dataplane.idempotency`).

Failures: an audit or Kafka outage fails the whole group (503, nothing visible); anything
else could be one member's doing, so the members are then retried one by one and a good
request is not failed by a bad neighbour.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
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
            lead = self._active < self.lanes
            if lead:
                self._active += 1
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

    def waiting(self) -> int:
        """Requests queued behind the commits in flight."""
        with self._lock:
            return len(self._queue)

    def _lead(self) -> None:
        """Commit one group from the queue's head, then hand this lane to a waiter."""
        with self._lock:
            group = self._take()  # empty if another lane took everything meanwhile
        try:
            if group:
                self._run(group)
        finally:
            with self._lock:
                for m in group:  # whatever happened, nobody is left waiting
                    if m.positions is None and m.error is None:
                        m.error = DependencyUnavailable("publish did not complete")
                    m.done = True
                self.stats.requests += len(group)
                successor = next((m for m in self._queue if not m.promoted), None)
                if successor is not None:
                    successor.promoted = True
                else:
                    self._active -= 1
            for m in group:
                m.wake.set()
            if successor is not None:
                successor.wake.set()

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

    def _run(self, group: list[_Member]) -> None:
        try:
            answers = self._transaction(group)
        except SHARED_FAILURES as exc:
            for m in group:
                m.error = exc
            return
        except Exception as exc:
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

    def _transaction(self, group: list[_Member]) -> list[list[Position]]:
        with self._lock:
            self.stats.groups += 1
        staged: list[list[Position]] = []

        def audit_first(positions: list[list[Position]]) -> None:
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

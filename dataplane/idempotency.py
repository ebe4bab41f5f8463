"""Publish idempotency: a key claimed before publishing, settled with the answer after.

A retry with the same key and body gets the first answer; the same key with another body is
a conflict; a retry while the first is still running is a conflict too (it may yet commit).

A crash between claim and settle must not leave the key stuck. Each claim has a request id
(put in a header of the batch's first record) and, written while the Kafka transaction is
still open, the answer it will give (``staged``). A retry that finds a staged claim asks Kafka
(:mod:`dataplane.outcome`): committed → settled with the staged answer and replayed; aborted →
taken over and published; transaction still open → still in progress. A claim never staged is
taken over once older than ``resolve_after_s`` (its owner's staging then fails and its
transaction aborts, so the two can never both publish). Every change of a claim names its
request id, so a late owner never overwrites its successor. A publish that fails after
staging keeps its claim (the commit may have happened): the retry learns which.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from dataplane.models import IdempotencyRow
from dataplane.outcome import Outcome
from exchange.db import transaction
from exchange.errors import Conflict, ExchangeError
from exchange.kafka.port import Position

IN_PROGRESS = "a request with this Idempotency-Key is in progress"


def request_digest(body: bytes, topic: str) -> str:
    return hashlib.sha256(topic.encode() + b"\0" + body).hexdigest()


class ClaimLost(Conflict):
    """The claim was resolved by a retry while this request ran: it must not commit."""

    code = "idempotency_claim_lost"


@dataclass(frozen=True)
class Claim:
    request_id: str = ""  # go ahead under this id
    answer: dict[str, Any] | None = None  # an earlier request's answer: replay it


@dataclass(frozen=True)
class Staged:
    client_id: str
    key: str
    request_id: str
    answer: dict[str, Any]


class OutcomesPort(Protocol):
    def outcome(self, topic: str, at: Position, request_id: str) -> Outcome: ...


class IdempotencyStore:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        outcomes: OutcomesPort | None = None,
        resolve_after_s: float = 120.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessions = sessions
        self.outcomes = outcomes
        self.resolve_after = timedelta(seconds=resolve_after_s)
        self.clock = clock

    def claim(self, client_id: str, key: str, request_hash: str) -> Claim:
        """The stored answer of an earlier request with this key, or a claim to go ahead.
        Claims the key first so two concurrent retries cannot both publish."""
        with transaction(self.sessions) as s:
            row = self._row(s, client_id, key)
            if row is not None:
                if row.request_hash != request_hash:
                    raise Conflict("Idempotency-Key was used with a different request")
                if row.response is not None:
                    return Claim(answer=dict(row.response))
                young = _aware(row.created_at) > self.clock() - self.resolve_after
                if row.staged is None and young:
                    raise Conflict(IN_PROGRESS)
                stale = (row.id, row.request_id, row.staged)
        if row is not None:
            return self._resolve(client_id, key, *stale)
        claim = Claim(request_id=uuid.uuid4().hex)
        try:
            with transaction(self.sessions) as s:
                s.add(
                    IdempotencyRow(
                        client_id=client_id,
                        key=key,
                        request_hash=request_hash,
                        response=None,
                        request_id=claim.request_id,
                        created_at=self.clock(),
                    )
                )
        except ExchangeError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise Conflict(IN_PROGRESS) from exc
            raise
        return claim

    def stage_many(self, staged: Sequence[Staged]) -> None:
        """Record each answer before the transaction commits; raises :class:`ClaimLost`
        (aborting the transaction) if a retry has resolved a claim meanwhile."""
        with transaction(self.sessions) as s:
            for st in staged:
                done = s.execute(
                    update(IdempotencyRow)
                    .where(*_owned(st.client_id, st.key, st.request_id))
                    .values(staged=st.answer)
                )
                if done.rowcount != 1:  # type: ignore[attr-defined]
                    raise ClaimLost("the Idempotency-Key was resolved by a retry meanwhile")

    def settle(self, client_id: str, key: str, request_id: str, response: dict[str, Any]) -> None:
        with transaction(self.sessions) as s:
            s.execute(
                update(IdempotencyRow)
                .where(*_owned(client_id, key, request_id))
                .values(response=response)
            )

    def release(self, client_id: str, key: str, request_id: str) -> None:
        """Free the key after a failed publish — unless it got as far as staging, when the
        commit may have happened anyway: then the retry asks Kafka."""
        with transaction(self.sessions) as s:
            s.execute(
                delete(IdempotencyRow).where(
                    *_owned(client_id, key, request_id), IdempotencyRow.staged.is_(None)
                )
            )

    def _resolve(
        self, client_id: str, key: str, row_id: int, old: str | None, staged: dict[str, Any] | None
    ) -> Claim:
        if old is None:  # claimed before claims carried request ids: the outcome is unknowable
            raise Conflict(
                "the outcome of the earlier request with this Idempotency-Key cannot be "
                "determined; check the topic and use a new key"
            )
        if staged is not None:
            outcome = self._outcome(staged, old)
            if outcome is Outcome.UNDECIDED:
                raise Conflict(IN_PROGRESS)
            if outcome is Outcome.COMMITTED:
                self.settle(client_id, key, old, staged)
                return Claim(answer=staged)
        return self._take_over(row_id, old, staged_before=staged is not None)

    def _outcome(self, staged: dict[str, Any], request_id: str) -> Outcome:
        offsets = staged.get("offsets") or []
        if not offsets:
            return Outcome.COMMITTED  # nothing was written either way: the answer stands
        if self.outcomes is None:
            return Outcome.UNDECIDED
        first = Position(int(offsets[0]["partition"]), int(offsets[0]["offset"]))
        return self.outcomes.outcome(str(staged["topic"]), first, request_id)

    def _take_over(self, row_id: int, old: str, *, staged_before: bool) -> Claim:
        claim = Claim(request_id=uuid.uuid4().hex)
        with transaction(self.sessions) as s:
            guard = [IdempotencyRow.id == row_id, IdempotencyRow.request_id == old]
            if not staged_before:  # races the owner's staging: exactly one of them wins
                guard.append(IdempotencyRow.staged.is_(None))
            done = s.execute(
                update(IdempotencyRow)
                .where(*guard, IdempotencyRow.response.is_(None))
                .values(request_id=claim.request_id, staged=None, created_at=self.clock())
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict(IN_PROGRESS)  # another retry, or the owner, got there first
        return claim

    @staticmethod
    def _row(s: Session, client_id: str, key: str) -> IdempotencyRow | None:
        return s.scalars(
            select(IdempotencyRow).where(
                IdempotencyRow.client_id == client_id, IdempotencyRow.key == key
            )
        ).first()


def _owned(client_id: str, key: str, request_id: str) -> list[Any]:
    return [
        IdempotencyRow.client_id == client_id,
        IdempotencyRow.key == key,
        IdempotencyRow.request_id == request_id,
        IdempotencyRow.response.is_(None),
    ]


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)

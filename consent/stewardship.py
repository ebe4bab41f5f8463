"""What a steward sees of their department's agreements: the inbox of requests with their
deadlines, each field with its classification, and who reads which fields today. Pure views
over :class:`~consent.agreements.Agreement`; reading and deciding stay in ``Agreements`` (the
same rules as the API: only the owner's steward sees and decides these)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from consent.agreements import Agreement
from consent.domain import CLASSIFICATIONS, AgreementStatus

UNKNOWN = "unknown"  # the registry cannot say (no schema version, or a field it lost)


class FieldLike(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def classification(self) -> object: ...
    @property
    def data_subject(self) -> bool: ...


@dataclass(frozen=True)
class FieldRow:
    path: str
    classification: str  # public | internal | sensitive | secret | unknown
    data_subject: bool
    requested: bool
    granted: bool

    @property
    def rank(self) -> int:
        """For sorting and badges: unknown counts as the most sensitive (fail closed)."""
        c = self.classification
        return CLASSIFICATIONS.index(c) if c in CLASSIFICATIONS else len(CLASSIFICATIONS)


@dataclass(frozen=True)
class Deadline:
    respond_by: datetime
    seconds_left: int  # negative once overdue
    overdue: bool


@dataclass(frozen=True)
class StewardView:
    agreement: Agreement
    fields: tuple[FieldRow, ...]
    deadline: Deadline | None  # only while pending

    @property
    def most_sensitive(self) -> str:
        wanted = [f for f in self.fields if f.requested]
        return max(wanted, key=lambda f: f.rank).classification if wanted else UNKNOWN


def field_rows(a: Agreement, known: Sequence[FieldLike] | None) -> tuple[FieldRow, ...]:
    """The requested fields, each with its classification from the topic's current schema."""
    by_path = {f.path: f for f in known or ()}
    granted = set(a.granted_fields or ())
    rows = []
    for path in a.fields:
        info = by_path.get(path)
        cls = str(getattr(info.classification, "value", info.classification)) if info else UNKNOWN
        rows.append(
            FieldRow(
                path=path,
                classification=cls if cls in CLASSIFICATIONS else UNKNOWN,
                data_subject=bool(info and info.data_subject),
                requested=True,
                granted=path in granted,
            )
        )
    return tuple(rows)


def deadline(a: Agreement, now: datetime) -> Deadline | None:
    if a.status is not AgreementStatus.PENDING:
        return None
    left = int((a.respond_by - now).total_seconds())
    return Deadline(a.respond_by, left, a.overdue(now))


def view(a: Agreement, known: Sequence[FieldLike] | None, now: datetime) -> StewardView:
    return StewardView(a, field_rows(a, known), deadline(a, now))


def inbox(owned: Iterable[StewardView]) -> list[StewardView]:
    """Pending requests, the most urgent (overdue first, then nearest deadline) first."""
    pending = [v for v in owned if v.deadline is not None]
    return sorted(pending, key=lambda v: v.deadline.seconds_left if v.deadline else 0)


CONSUMING = (AgreementStatus.APPROVED, AgreementStatus.SUSPENDED)


def consumers(owned: Iterable[StewardView], now: datetime) -> list[StewardView]:
    """Agreements under which another department reads (or, suspended, may again read) our
    data, by consumer and topic."""
    live = [
        v
        for v in owned
        if v.agreement.status in CONSUMING
        and v.agreement.valid_from <= now < v.agreement.valid_until
    ]
    return sorted(live, key=lambda v: (v.agreement.consumer, v.agreement.topic))

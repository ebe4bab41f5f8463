"""Sharing agreements: a consumer department asks, the topic owner's steward decides.

States: pending → approved | rejected; approved ⇄ suspended; approved/suspended → revoked.
An approved agreement past ``valid_until`` reads as ``expired``. Only an approved agreement
valid now becomes a :class:`Grant` (what the policy and delivery read, see
:meth:`Agreements.current_grant`).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from consent.catalog import Catalog
from consent.deadlines import add_working_days
from consent.domain import AgreementStatus, CatalogEntry, Grant
from consent.errors import AgreementNotFound, InvalidTransition, NotShared
from consent.models import AgreementRow
from exchange.auditing import AuditRecord, AuditSink
from exchange.db import transaction
from exchange.errors import Conflict, Forbidden, InvalidInput
from exchange.identity.tokens import Principal

log = logging.getLogger(__name__)

__all__ = ["Agreement", "AgreementStatus", "Agreements", "Grant"]

# Roles that may read every agreement; neither may decide one.
READ_ALL_ROLES = ("admin", "auditor")
OPEN_STATES = (AgreementStatus.PENDING, AgreementStatus.APPROVED, AgreementStatus.SUSPENDED)
# Returns the schema's fields (objects with .path and .data_subject) of a topic, or None
# when the registry cannot say; then field names are not checked.
FieldLookup = Callable[[CatalogEntry], Sequence[object] | None]
ChangeListener = Callable[[str, str], None]  # (consumer department, topic)


@dataclass(frozen=True)
class Agreement:
    id: str
    topic: str
    owner: str
    consumer: str
    requested_by: str
    fields: tuple[str, ...]
    granted_fields: tuple[str, ...] | None
    purpose: str
    legal_basis: str | None
    valid_from: datetime
    valid_until: datetime
    requires_subject_consent: bool
    status: AgreementStatus
    reason: str | None
    requested_at: datetime
    respond_by: datetime
    decided_at: datetime | None
    decided_by: str | None

    def overdue(self, now: datetime) -> bool:
        return self.status is AgreementStatus.PENDING and now > self.respond_by


def _utc(dt: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything we store is UTC.
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def effective_status(stored: str, valid_until: datetime, now: datetime) -> AgreementStatus:
    status = AgreementStatus(stored)
    if status is AgreementStatus.APPROVED and now >= valid_until:
        return AgreementStatus.EXPIRED
    return status


def _agreement(r: AgreementRow, now: datetime) -> Agreement:
    until = _utc(r.valid_until)
    return Agreement(
        id=r.id,
        topic=r.topic,
        owner=r.owner,
        consumer=r.consumer,
        requested_by=r.requested_by,
        fields=tuple(r.fields),
        granted_fields=tuple(r.granted_fields) if r.granted_fields is not None else None,
        purpose=r.purpose,
        legal_basis=r.legal_basis,
        valid_from=_utc(r.valid_from),
        valid_until=until,
        requires_subject_consent=r.requires_subject_consent,
        status=effective_status(r.status, until, now),
        reason=r.reason,
        requested_at=_utc(r.requested_at),
        respond_by=_utc(r.respond_by),
        decided_at=_utc(r.decided_at) if r.decided_at else None,
        decided_by=r.decided_by,
    )


def _grant(r: AgreementRow) -> Grant:
    return Grant(
        agreement_id=r.id,
        topic=r.topic,
        consumer=r.consumer,
        fields=frozenset(r.granted_fields or ()),
        purpose=r.purpose,
        requires_subject_consent=r.requires_subject_consent,
        valid_from=_utc(r.valid_from),
        valid_until=_utc(r.valid_until),
    )


def can_read(who: Principal, a: AgreementRow | Agreement) -> bool:
    return any(who.has(r) for r in READ_ALL_ROLES) or who.department in (a.owner, a.consumer)


def is_owner_steward(who: Principal, a: AgreementRow | Agreement) -> bool:
    return who.has("steward") and who.department == a.owner and not who.has("auditor")


class Agreements:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        audit: AuditSink,
        catalog: Catalog,
        *,
        response_working_days: int = 10,
        holidays: Set[date] = frozenset(),
        field_lookup: FieldLookup | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        grant_cache_seconds: float = 0.5,
    ) -> None:
        self.sessions = sessions
        self.audit = audit
        self.catalog = catalog
        self.response_working_days = response_working_days
        self.holidays = holidays
        self.field_lookup = field_lookup
        self.clock = clock
        # current_grant is called every second per open subscription: keep a snapshot of the
        # approved agreements for a moment. Local changes drop it at once; other replicas
        # see them within the TTL.
        self.grant_cache_seconds = grant_cache_seconds
        self._grants: tuple[float, dict[tuple[str, str], tuple[Grant, ...]]] | None = None
        self._lock = threading.Lock()
        self._listeners: list[ChangeListener] = []

    # -- change notification -------------------------------------------------------------
    def on_change(self, listener: ChangeListener) -> None:
        """Call ``listener(consumer, topic)`` after any agreement of that pair changed here."""
        self._listeners.append(listener)

    def forget_cached_grants(self) -> None:
        """Make the next current_grant read the store (e.g. after a change elsewhere)."""
        with self._lock:
            self._grants = None

    def _changed(self, consumer: str, topic: str) -> None:
        with self._lock:
            self._grants = None
        for listener in list(self._listeners):
            try:
                listener(consumer, topic)
            except Exception:  # the change is committed; a listener must not undo the answer
                log.exception("agreement change listener failed")

    # -- requests ------------------------------------------------------------------------
    def request(
        self,
        who: Principal,
        *,
        topic: str,
        fields: Iterable[str],
        purpose: str,
        legal_basis: str | None = None,
        valid_from: datetime | None = None,
        valid_until: datetime,
        requires_subject_consent: bool = False,
    ) -> Agreement:
        if not who.has("subscriber"):
            raise Forbidden("requires the role: subscriber")
        now = self.clock()
        wanted = sorted(set(fields))
        start = _utc(valid_from) if valid_from else now
        until = _utc(valid_until)
        self._check_request(wanted, purpose, start, until, now)
        entry = self.catalog.get(topic)
        if entry.share_type == "not_shared":
            raise NotShared(f"topic {topic} is not shared")
        self._check_fields(entry, wanted, requires_subject_consent)
        with transaction(self.sessions) as s:
            if self._open_exists(s, who.department, topic, now):
                raise Conflict(
                    f"department {who.department} already has an open agreement on {topic}",
                    code="agreement_exists",
                )
            row = AgreementRow(
                id=f"agr-{secrets.token_hex(8)}",
                topic=topic,
                owner=entry.owner,
                consumer=who.department,
                requested_by=who.client_id,
                fields=wanted,
                granted_fields=None,
                purpose=purpose.strip(),
                legal_basis=legal_basis,
                valid_from=start,
                valid_until=until,
                requires_subject_consent=requires_subject_consent,
                status=AgreementStatus.PENDING.value,
                reason=None,
                requested_at=now,
                respond_by=add_working_days(now, self.response_working_days, self.holidays),
                decided_at=None,
                decided_by=None,
                updated_at=now,
            )
            s.add(row)
            self._audit(who, "agreement.requested", row)
            return _agreement(row, now)

    @staticmethod
    def _check_request(
        fields: list[str], purpose: str, start: datetime, until: datetime, now: datetime
    ) -> None:
        if not fields:
            raise InvalidInput("name at least one field")
        if not purpose.strip():
            raise InvalidInput("purpose must not be empty")
        if until <= start or until <= now:
            raise InvalidInput("valid_until must be after valid_from and in the future")

    def _check_fields(self, entry: CatalogEntry, wanted: list[str], needs_subject: bool) -> None:
        known = self.field_lookup(entry) if self.field_lookup else None
        if known is None:
            return
        paths = {str(getattr(f, "path", "")) for f in known}
        if unknown := sorted(set(wanted) - paths):
            raise InvalidInput(f"unknown fields: {', '.join(unknown)}")
        if needs_subject and not any(getattr(f, "data_subject", False) for f in known):
            raise InvalidInput("the topic's schema marks no field as the data subject")

    def _open_exists(self, s: Session, consumer: str, topic: str, now: datetime) -> bool:
        rows = s.scalars(
            select(AgreementRow).where(
                AgreementRow.consumer == consumer,
                AgreementRow.topic == topic,
                AgreementRow.status.in_([st.value for st in OPEN_STATES]),
            )
        )
        return any(_utc(r.valid_until) > now for r in rows)

    # -- decisions by the owner's steward ------------------------------------------------
    def approve(
        self, agreement_id: str, who: Principal, fields: Iterable[str] | None = None
    ) -> Agreement:
        def change(row: AgreementRow) -> None:
            granted = sorted(set(fields)) if fields is not None else list(row.fields)
            if not granted:
                raise InvalidInput("approve at least one field")
            if extra := sorted(set(granted) - set(row.fields)):
                raise InvalidInput(f"can only narrow the request; not requested: {extra}")
            row.granted_fields = granted

        return self._transition(
            agreement_id, who, (AgreementStatus.PENDING,), AgreementStatus.APPROVED, change
        )

    def reject(self, agreement_id: str, who: Principal, reason: str) -> Agreement:
        if not reason.strip():
            raise InvalidInput("a rejection needs a reason")
        return self._transition(
            agreement_id, who, (AgreementStatus.PENDING,), AgreementStatus.REJECTED, reason=reason
        )

    def suspend(self, agreement_id: str, who: Principal, reason: str | None = None) -> Agreement:
        return self._transition(
            agreement_id, who, (AgreementStatus.APPROVED,), AgreementStatus.SUSPENDED, reason=reason
        )

    def resume(self, agreement_id: str, who: Principal) -> Agreement:
        return self._transition(
            agreement_id,
            who,
            (AgreementStatus.SUSPENDED,),
            AgreementStatus.APPROVED,
            verb="resumed",
        )

    def revoke(self, agreement_id: str, who: Principal, reason: str | None = None) -> Agreement:
        return self._transition(
            agreement_id,
            who,
            (AgreementStatus.APPROVED, AgreementStatus.SUSPENDED),
            AgreementStatus.REVOKED,
            reason=reason,
        )

    def _transition(
        self,
        agreement_id: str,
        who: Principal,
        allowed_from: tuple[AgreementStatus, ...],
        to: AgreementStatus,
        change: Callable[[AgreementRow], None] | None = None,
        *,
        reason: str | None = None,
        verb: str | None = None,
    ) -> Agreement:
        now = self.clock()
        with transaction(self.sessions) as s:
            row = s.get(AgreementRow, agreement_id, with_for_update=True)
            if row is None or not can_read(who, row):
                raise AgreementNotFound(f"agreement {agreement_id} not found")
            if not is_owner_steward(who, row):
                raise Forbidden("only a steward of the owner department decides agreements")
            current = effective_status(row.status, _utc(row.valid_until), now)
            if current not in allowed_from:
                raise InvalidTransition(
                    f"agreement {agreement_id} is {current.value}; cannot become {to.value}"
                )
            if change is not None:
                change(row)
            row.status = to.value
            row.reason = reason if reason is not None else row.reason
            row.updated_at = now
            if current is AgreementStatus.PENDING:
                row.decided_at, row.decided_by = now, who.client_id
            self._audit(who, f"agreement.{verb or to.value}", row)
            result = _agreement(row, now)
        self._changed(result.consumer, result.topic)
        return result

    def _audit(self, who: Principal, kind: str, row: AgreementRow) -> None:
        data: dict[str, object] = {
            "agreement_id": row.id,
            "consumer": row.consumer,
            "owner": row.owner,
            "status": row.status,
            "fields": list(row.granted_fields if row.granted_fields is not None else row.fields),
        }
        if row.reason:
            data["reason"] = row.reason
        self.audit.append(
            AuditRecord(
                kind, actor=who.client_id, department=who.department, topic=row.topic, data=data
            )
        )

    def flag_overdue(self) -> list[Agreement]:
        """Tell the admin (an audit event, once each) about requests past their deadline."""
        now = self.clock()
        with transaction(self.sessions) as s:
            rows = s.scalars(
                select(AgreementRow).where(
                    AgreementRow.status == AgreementStatus.PENDING.value,
                    AgreementRow.respond_by < now,
                    AgreementRow.overdue_flagged_at.is_(None),
                )
            ).all()
            flagged = []
            for row in rows:
                # Conditional update: of several replicas ticking at once, one tells the admin.
                claimed = s.execute(
                    update(AgreementRow)
                    .where(AgreementRow.id == row.id, AgreementRow.overdue_flagged_at.is_(None))
                    .values(overdue_flagged_at=now)
                    .execution_options(synchronize_session=False)
                )
                if claimed.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                flagged.append(row)
                self.audit.append(
                    AuditRecord(
                        "agreement.overdue",
                        actor="system",
                        department=row.owner,
                        topic=row.topic,
                        data={
                            "agreement_id": row.id,
                            "consumer": row.consumer,
                            "owner": row.owner,
                            "respond_by": _utc(row.respond_by).isoformat(),
                        },
                    )
                )
            return [_agreement(r, now) for r in flagged]

    # -- queries -------------------------------------------------------------------------
    def get(self, agreement_id: str, who: Principal) -> Agreement:
        with transaction(self.sessions) as s:
            row = s.get(AgreementRow, agreement_id)
            if row is None or not can_read(who, row):
                raise AgreementNotFound(f"agreement {agreement_id} not found")
            return _agreement(row, self.clock())

    def list(
        self,
        who: Principal,
        *,
        topic: str | None = None,
        status: str | None = None,
        overdue: bool | None = None,
    ) -> list[Agreement]:
        now = self.clock()
        stmt = select(AgreementRow).order_by(AgreementRow.requested_at, AgreementRow.id)
        if topic:
            stmt = stmt.where(AgreementRow.topic == topic)
        if not any(who.has(r) for r in READ_ALL_ROLES):
            dept = who.department
            stmt = stmt.where((AgreementRow.owner == dept) | (AgreementRow.consumer == dept))
        with transaction(self.sessions) as s:
            found = [_agreement(r, now) for r in s.scalars(stmt)]
        if status:
            found = [a for a in found if a.status.value == status]
        if overdue is not None:
            found = [a for a in found if a.overdue(now) == overdue]
        return found

    def of_topic(self, topic: str) -> Sequence[Agreement]:
        """Every agreement on ``topic``, whatever its state (the owner site replicates them)."""
        now = self.clock()
        stmt = select(AgreementRow).where(AgreementRow.topic == topic).order_by(AgreementRow.id)
        with transaction(self.sessions) as s:
            return [_agreement(r, now) for r in s.scalars(stmt)]

    def current_grant(self, consumer_dept: str, topic: str, now: datetime) -> Grant | None:
        """The approved agreement of ``consumer_dept`` on ``topic`` valid at ``now``, or None.

        Served from a snapshot of every approved agreement, re-read at most every
        ``grant_cache_seconds`` with one query however many subscriptions ask. Store failures
        raise DependencyUnavailable (fail closed) once the snapshot has aged out.
        """
        grants = self._snapshot().get((consumer_dept, topic), ())
        valid = [g for g in grants if g.valid_at(now)]
        return max(valid, key=lambda g: g.valid_from) if valid else None

    def _snapshot(self) -> dict[tuple[str, str], tuple[Grant, ...]]:
        with self._lock:
            snap = self._grants
            if snap is not None and time.monotonic() - snap[0] <= self.grant_cache_seconds:
                return snap[1]
            # One reader refreshes while the others wait for it (no thundering herd).
            loaded_at = time.monotonic()
            by_pair: dict[tuple[str, str], list[Grant]] = {}
            cols = (
                AgreementRow.id,
                AgreementRow.topic,
                AgreementRow.consumer,
                AgreementRow.granted_fields,
                AgreementRow.purpose,
                AgreementRow.requires_subject_consent,
                AgreementRow.valid_from,
                AgreementRow.valid_until,
            )
            approved = AgreementRow.status == AgreementStatus.APPROVED.value
            with transaction(self.sessions) as s:
                # Plain column tuples: several times cheaper than ORM objects per row.
                for aid, topic, consumer, fields, purpose, needs, start, until in s.execute(
                    select(*cols).where(approved)
                ):
                    grant = Grant(
                        agreement_id=aid,
                        topic=topic,
                        consumer=consumer,
                        fields=frozenset(fields or ()),
                        purpose=purpose,
                        requires_subject_consent=needs,
                        valid_from=_utc(start),
                        valid_until=_utc(until),
                    )
                    by_pair.setdefault((consumer, topic), []).append(grant)
            fresh = {k: tuple(v) for k, v in by_pair.items()}
            self._grants = (loaded_at, fresh)
            return fresh

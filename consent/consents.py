"""Data-subject consents: recorded by a ``consent_registrar``, versioned, signed (JWS).

Only registrars of the topic's owning department, or of a consent-manager department an admin
designated for it, record or change a consent, and never for their own department as consumer
(:func:`consent.managers.may_register`). Every refusal is audited and writes nothing.

A consent is never edited in place: each state change (pause, resume, revoke) adds a version
with its own signed artefact, and ``consents`` holds the current version for fast lookups.
Raw subject ids are not stored (see :mod:`consent.models`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consent.catalog import Catalog
from consent.domain import CatalogEntry, ConsentRef, ConsentStatus
from consent.errors import ConsentNotFound, InvalidTransition
from consent.managers import managers_of, may_register
from consent.models import CatalogRow, ConsentRow, ConsentVersionRow
from consent.signing import ARTEFACT_FORMAT, ConsentSigner, artefact_claims
from exchange.auditing import AuditRecord, AuditSink
from exchange.db import transaction
from exchange.errors import Forbidden, InvalidInput
from exchange.identity.models import DepartmentRow
from exchange.identity.tokens import Principal

__all__ = ["Consent", "ConsentRef", "ConsentStatus", "ConsentVersion", "Consents"]

REGISTRAR = "consent_registrar"
READ_ALL_ROLES = ("admin", "auditor")
_IN_CHUNK = 500  # stay under SQLite's bound-parameter limit
FieldLookup = Callable[[CatalogEntry], Sequence[object] | None]


@dataclass(frozen=True)
class Consent:
    id: str
    version: int
    consumer: str
    topic: str
    purpose: str
    fields: tuple[str, ...]
    status: ConsentStatus
    valid_from: datetime
    valid_until: datetime
    registrar_department: str
    artefact: str  # compact JWS of this version


@dataclass(frozen=True)
class ConsentVersion:
    consent_id: str
    version: int
    status: ConsentStatus
    artefact: str
    actor: str
    created_at: datetime


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def effective_status(stored: str, valid_until: datetime, now: datetime) -> ConsentStatus:
    status = ConsentStatus(stored)
    if status is ConsentStatus.ACTIVE and now >= valid_until:
        return ConsentStatus.EXPIRED
    return status


def _ref(r: ConsentRow) -> ConsentRef:
    return ConsentRef(
        consent_id=r.id,
        version=r.version,
        consumer=r.consumer,
        topic=r.topic,
        purpose=r.purpose,
        fields=frozenset(r.fields),
        status=ConsentStatus(r.status),
        valid_from=_utc(r.valid_from),
        valid_until=_utc(r.valid_until),
    )


class Consents:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        audit: AuditSink,
        catalog: Catalog,
        signer: ConsentSigner,
        *,
        field_lookup: FieldLookup | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessions = sessions
        self.audit = audit
        self.catalog = catalog
        self.signer = signer
        self.field_lookup = field_lookup
        self.clock = clock

    def jwks(self) -> dict[str, object]:
        return dict(self.signer.jwks())

    # -- changes -------------------------------------------------------------------------
    def record(
        self,
        who: Principal,
        *,
        subject: str,
        consumer: str,
        topic: str,
        purpose: str,
        fields: Iterable[str] = (),
        valid_until: datetime,
        valid_from: datetime | None = None,
    ) -> Consent:
        if not who.has(REGISTRAR):
            raise Forbidden(f"requires the role: {REGISTRAR}")
        now = self.clock()
        start, until = (_utc(valid_from) if valid_from else now), _utc(valid_until)
        wanted = sorted(set(fields))
        if not subject.strip() or not purpose.strip():
            raise InvalidInput("subject and purpose must not be empty")
        if until <= start or until <= now:
            raise InvalidInput("valid_until must be after valid_from and in the future")
        entry = self.catalog.get(topic)
        with transaction(self.sessions) as s:
            refused = may_register(who, entry.owner, consumer, managers_of(s, entry.owner))
            if refused:
                self._refuse(who, "record", topic, consumer, refused, subjects=(subject,))
        self._check_fields(entry, wanted)
        with transaction(self.sessions) as s:
            if s.get(DepartmentRow, consumer) is None:
                raise InvalidInput(f"consumer department {consumer} does not exist")
            row = ConsentRow(
                id=f"cns-{secrets.token_hex(8)}",
                subject_index=self.signer.subject_index(subject),
                consumer=consumer,
                topic=topic,
                purpose=purpose.strip(),
                fields=wanted,
                valid_from=start,
                valid_until=until,
                status=ConsentStatus.ACTIVE.value,
                version=1,
                registrar_department=who.department,
                created_at=now,
            )
            s.add(row)
            s.flush()
            consent = self._new_version(s, row, who, now)
            self._audit(who, "consent.recorded", row, subjects=(subject,))
            return consent

    def _refuse(
        self,
        who: Principal,
        action: str,
        topic: str,
        consumer: str,
        reason: str,
        subjects: tuple[str, ...] = (),
        consent_id: str | None = None,
    ) -> None:
        """Audit a refused consent change, then raise the 403 (nothing has been written)."""
        data: dict[str, object] = {"action": action, "consumer": consumer, "reason": reason}
        if consent_id:
            data["consent_id"] = consent_id
        self.audit.append(
            AuditRecord(
                "consent.denied",
                actor=who.client_id,
                department=who.department,
                topic=topic,
                subjects=subjects,
                outcome="denied",
                data=data,
            )
        )
        raise Forbidden(reason)

    def _check_fields(self, entry: CatalogEntry, wanted: list[str]) -> None:
        known = self.field_lookup(entry) if self.field_lookup else None
        if known is None:
            return
        paths = {str(getattr(f, "path", "")) for f in known}
        if unknown := sorted(set(wanted) - paths):
            raise InvalidInput(f"unknown fields: {', '.join(unknown)}")

    def revoke(self, consent_id: str, who: Principal) -> Consent:
        allowed = (ConsentStatus.ACTIVE, ConsentStatus.PAUSED, ConsentStatus.EXPIRED)
        return self._transition(consent_id, who, allowed, ConsentStatus.REVOKED, "revoked")

    def pause(self, consent_id: str, who: Principal) -> Consent:
        allowed = (ConsentStatus.ACTIVE,)
        return self._transition(consent_id, who, allowed, ConsentStatus.PAUSED, "paused")

    def resume(self, consent_id: str, who: Principal) -> Consent:
        allowed = (ConsentStatus.PAUSED,)
        return self._transition(consent_id, who, allowed, ConsentStatus.ACTIVE, "resumed")

    def _transition(
        self,
        consent_id: str,
        who: Principal,
        allowed: tuple[ConsentStatus, ...],
        to: ConsentStatus,
        verb: str,
    ) -> Consent:
        now = self.clock()
        with transaction(self.sessions) as s:
            row = s.get(ConsentRow, consent_id, with_for_update=True)
            if row is None:
                raise ConsentNotFound(f"consent {consent_id} not found")
            owner = self._owner(s, row.topic)
            refused = may_register(who, owner, row.consumer, managers_of(s, owner))
            if refused:
                if not self._can_read(s, who, row):
                    raise ConsentNotFound(f"consent {consent_id} not found")
                self._refuse(who, verb, row.topic, row.consumer, refused, consent_id=row.id)
            current = effective_status(row.status, _utc(row.valid_until), now)
            if current not in allowed:
                raise InvalidTransition(
                    f"consent {consent_id} is {current.value}; cannot become {to.value}"
                )
            row.status = to.value
            row.version += 1
            consent = self._new_version(s, row, who, now)
            self._audit(who, f"consent.{verb}", row)
            return consent

    def _new_version(self, s: Session, row: ConsentRow, who: Principal, now: datetime) -> Consent:
        claims: dict[str, object] = {
            "jti": row.id,
            "consent_version": row.version,
            "sub_hash": self.signer.artefact_subject(row.subject_index),
            "consumer": row.consumer,
            "topic": row.topic,
            "purpose": row.purpose,
            "fields": list(row.fields),
            "status": row.status,
            "valid_from": _utc(row.valid_from).isoformat(),
            "valid_until": _utc(row.valid_until).isoformat(),
            "registrar": row.registrar_department,
            "iat": int(now.timestamp()),
        }
        artefact = self.signer.sign(claims)
        s.add(
            ConsentVersionRow(
                consent_id=row.id,
                version=row.version,
                status=row.status,
                artefact=artefact,
                actor=who.client_id,
                created_at=now,
            )
        )
        return self._consent(row, artefact, now)

    def _audit(
        self, who: Principal, kind: str, row: ConsentRow, subjects: tuple[str, ...] = ()
    ) -> None:
        self.audit.append(
            AuditRecord(
                kind,
                actor=who.client_id,
                department=who.department,
                topic=row.topic,
                subjects=subjects,
                data={
                    "consent_id": row.id,
                    "version": row.version,
                    "consumer": row.consumer,
                    "status": row.status,
                    "fields": list(row.fields),
                },
            )
        )

    # -- queries -------------------------------------------------------------------------
    @staticmethod
    def _owner(s: Session, topic: str) -> str:
        entry = s.get(CatalogRow, topic)
        return entry.owner if entry is not None else ""

    def _can_read(self, s: Session, who: Principal, row: ConsentRow) -> bool:
        if any(who.has(r) for r in READ_ALL_ROLES):
            return True
        if who.department in (row.registrar_department, row.consumer):
            return True
        owner = self._owner(s, row.topic)
        return who.department == owner or who.department in managers_of(s, owner)

    def _consent(self, row: ConsentRow, artefact: str, now: datetime) -> Consent:
        return Consent(
            id=row.id,
            version=row.version,
            consumer=row.consumer,
            topic=row.topic,
            purpose=row.purpose,
            fields=tuple(row.fields),
            status=effective_status(row.status, _utc(row.valid_until), now),
            valid_from=_utc(row.valid_from),
            valid_until=_utc(row.valid_until),
            registrar_department=row.registrar_department,
            artefact=artefact,
        )

    def get(self, consent_id: str, who: Principal) -> Consent:
        with transaction(self.sessions) as s:
            row = s.get(ConsentRow, consent_id)
            if row is None or not self._can_read(s, who, row):
                raise ConsentNotFound(f"consent {consent_id} not found")
            current = s.get(ConsentVersionRow, (row.id, row.version))
            assert current is not None
            return self._consent(row, current.artefact, self.clock())

    def versions(self, consent_id: str, who: Principal) -> list[ConsentVersion]:
        with transaction(self.sessions) as s:
            row = s.get(ConsentRow, consent_id)
            if row is None or not self._can_read(s, who, row):
                raise ConsentNotFound(f"consent {consent_id} not found")
            rows = s.scalars(
                select(ConsentVersionRow)
                .where(ConsentVersionRow.consent_id == consent_id)
                .order_by(ConsentVersionRow.version)
            )
            return [
                ConsentVersion(
                    v.consent_id,
                    v.version,
                    ConsentStatus(v.status),
                    v.artefact,
                    v.actor,
                    _utc(v.created_at),
                )
                for v in rows
            ]

    def find(self, who: Principal, subject: str) -> list[Consent]:
        """A subject's consents that the caller may see (registrars look up their citizens)."""
        index = self.signer.subject_index(subject)
        now = self.clock()
        with transaction(self.sessions) as s:
            rows = s.scalars(
                select(ConsentRow)
                .where(ConsentRow.subject_index == index)
                .order_by(ConsentRow.created_at)
            )
            found = []
            for row in rows:
                if self._can_read(s, who, row):
                    v = s.get(ConsentVersionRow, (row.id, row.version))
                    assert v is not None
                    found.append(self._consent(row, v.artefact, now))
            return found

    def active_consents(
        self, consumer: str, topic: str, subjects: set[str], now: datetime
    ) -> dict[str, ConsentRef]:
        """Subject → its consent active at ``now`` for this consumer and topic (newest wins).

        Subjects without one are absent. One query per 500 subjects; store failures raise
        DependencyUnavailable (fail closed).
        """
        by_index = {self.signer.subject_index(sub): sub for sub in subjects}
        indexes = sorted(by_index)
        found: dict[str, ConsentRef] = {}
        cols = (
            ConsentRow.subject_index,
            ConsentRow.id,
            ConsentRow.version,
            ConsentRow.purpose,
            ConsentRow.fields,
            ConsentRow.valid_from,
            ConsentRow.valid_until,
        )
        with transaction(self.sessions) as s:
            for i in range(0, len(indexes), _IN_CHUNK):
                rows = s.execute(
                    select(*cols)
                    .where(
                        ConsentRow.consumer == consumer,
                        ConsentRow.topic == topic,
                        ConsentRow.subject_index.in_(indexes[i : i + _IN_CHUNK]),
                        ConsentRow.status == ConsentStatus.ACTIVE.value,
                    )
                    .order_by(ConsentRow.created_at)
                )
                for index, cid, version, purpose, fields, start, until in rows:
                    ref = ConsentRef(
                        consent_id=cid,
                        version=version,
                        consumer=consumer,
                        topic=topic,
                        purpose=purpose,
                        fields=frozenset(fields),
                        status=ConsentStatus.ACTIVE,
                        valid_from=_utc(start),
                        valid_until=_utc(until),
                    )
                    if ref.active_at(now):
                        found[by_index[index]] = ref
        return found

    # -- format upgrade ------------------------------------------------------------------
    def upgrade_artefacts(self) -> int:
        """Re-sign stored artefacts of an older format (format 1 carried ``sub_salt`` and
        ``SHA-256(salt || subject)``, which an id enumeration reverses) with the keyed subject
        hash; every other claim is kept. Idempotent; returns how many were re-signed."""
        done = 0
        with transaction(self.sessions) as s:
            rows = s.execute(
                select(ConsentVersionRow, ConsentRow.subject_index).join(
                    ConsentRow, ConsentRow.id == ConsentVersionRow.consent_id
                )
            )
            for version, index in rows:
                claims = artefact_claims(version.artefact)
                if claims.get("ver") == ARTEFACT_FORMAT:
                    continue
                keep = {k: v for k, v in claims.items() if k not in ("iss", "ver", "sub_salt")}
                keep["sub_hash"] = self.signer.artefact_subject(index)
                keep["reissued_at"] = int(self.clock().timestamp())
                version.artefact = self.signer.sign(keep)
                done += 1
        return done

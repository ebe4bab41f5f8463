"""Data-subject consents: recorded by a ``consent_registrar``, versioned, signed (JWS).

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
from consent.models import ConsentRow, ConsentVersionRow
from consent.signing import ConsentSigner, artefact_claim, subject_hash
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
        self._check_fields(entry, wanted)
        salt = secrets.token_hex(16)
        with transaction(self.sessions) as s:
            if s.get(DepartmentRow, consumer) is None:
                raise InvalidInput(f"consumer department {consumer} does not exist")
            row = ConsentRow(
                id=f"cns-{secrets.token_hex(8)}",
                subject_index=self.signer.subject_index(subject),
                subject_salt=salt,
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
            consent = self._new_version(s, row, who, now, subject=subject)
            self._audit(who, "consent.recorded", row, subjects=(subject,))
            return consent

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
            if row is None or not self._can_read(who, row):
                raise ConsentNotFound(f"consent {consent_id} not found")
            if not (who.has(REGISTRAR) and who.department == row.registrar_department):
                raise Forbidden("only a registrar of the recording department changes a consent")
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

    def _new_version(
        self, s: Session, row: ConsentRow, who: Principal, now: datetime, subject: str = ""
    ) -> Consent:
        claims: dict[str, object] = {
            "jti": row.id,
            "consent_version": row.version,
            "sub_hash": self._sub_hash(s, row, subject),
            "sub_salt": row.subject_salt,
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

    @staticmethod
    def _sub_hash(s: Session, row: ConsentRow, subject: str) -> str:
        if subject:
            return subject_hash(row.subject_salt, subject)
        # Later versions carry the hash of the first one (the raw id is not kept).
        first = s.get(ConsentVersionRow, (row.id, 1))
        assert first is not None
        return str(artefact_claim(first.artefact, "sub_hash"))

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
    def _can_read(who: Principal, row: ConsentRow) -> bool:
        return any(who.has(r) for r in READ_ALL_ROLES) or who.department in (
            row.registrar_department,
            row.consumer,
        )

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
            if row is None or not self._can_read(who, row):
                raise ConsentNotFound(f"consent {consent_id} not found")
            current = s.get(ConsentVersionRow, (row.id, row.version))
            assert current is not None
            return self._consent(row, current.artefact, self.clock())

    def versions(self, consent_id: str, who: Principal) -> list[ConsentVersion]:
        with transaction(self.sessions) as s:
            row = s.get(ConsentRow, consent_id)
            if row is None or not self._can_read(who, row):
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
                if self._can_read(who, row):
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

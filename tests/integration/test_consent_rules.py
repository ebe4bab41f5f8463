"""Who may register consent (issue 12 item 4) and artefacts that name their subject only by a
keyed hash (item 14), against a real SQLite control plane. Every refusal is a Forbidden,
audited as ``consent.denied``, and leaves the consent tables as they were."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from consent.catalog import Catalog
from consent.consents import Consents
from consent.managers import ConsentManagers
from consent.models import ConsentManagerRow, ConsentRow, ConsentVersionRow
from consent.signing import ConsentSigner, artefact_claims, verify_artefact
from exchange.auditing import MemoryAuditSink
from exchange.db import make_engine, migrate, session_factory
from exchange.errors import Forbidden, NotFound
from exchange.identity.service import IdentityService
from exchange.identity.tokens import Principal
from tests.integration.test_consent_services import make_entry

SOON = datetime.now(UTC) + timedelta(days=30)
ADMIN = Principal("exchange-admin", "exchange-admin", frozenset({"admin"}), "j", "i", 0)


def registrar(dept: str) -> Principal:
    return Principal(f"{dept}-reg", dept, frozenset({"consent_registrar"}), "j", "i", 0)


@dataclass
class World:
    sessions: sessionmaker[Session]
    audit: MemoryAuditSink
    consents: Consents
    managers: ConsentManagers
    signer: ConsentSigner

    def counts(self) -> tuple[int, int, int]:
        with self.sessions() as s:
            return tuple(  # type: ignore[return-value]
                s.scalar(select(func.count()).select_from(t)) or 0
                for t in (ConsentRow, ConsentVersionRow, ConsentManagerRow)
            )

    def record(self, who: Principal, subject: str = "110101199003070011", **kw: Any) -> str:
        args = {"consumer": "police", "topic": "health.visits", "purpose": "p", **kw}
        return self.consents.record(who, subject=subject, valid_until=SOON, **args).id

    def denials(self) -> list[dict[str, Any]]:
        return [r.data for r in self.audit.records if r.type == "consent.denied"]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    engine = make_engine(f"sqlite:///{tmp_path / 'cp.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    ident = IdentityService(sessions)
    for dept in ("health", "police", "tax", "civil"):
        ident.create_department(dept, dept.title(), "city")
    audit = MemoryAuditSink()
    catalog = Catalog(sessions, audit)
    catalog.create(make_entry())  # health.visits, owned by health
    signer = ConsentSigner(b"m" * 32, "http://exchange.test")
    yield World(
        sessions,
        audit,
        Consents(sessions, audit, catalog, signer),
        ConsentManagers(sessions, audit),
        signer,
    )
    engine.dispose()


def test_owner_registrars_record_and_change_consents(world: World) -> None:
    cid = world.record(registrar("health"))
    assert world.consents.pause(cid, registrar("health")).status.value == "PAUSED"
    assert world.consents.revoke(cid, registrar("health")).status.value == "REVOKED"


@pytest.mark.parametrize(
    ("dept", "consumer"),
    [("tax", "police"), ("police", "police"), ("civil", "police")],
    ids=["foreign-department", "the-consumer-itself", "undesignated-portal"],
)
def test_others_are_refused_audited_and_nothing_is_written(
    world: World, dept: str, consumer: str
) -> None:
    before = world.counts()
    with pytest.raises(Forbidden):
        world.record(registrar(dept), consumer=consumer)
    assert world.counts() == before
    (denied,) = world.denials()
    assert denied["action"] == "record" and denied["consumer"] == consumer
    refusal = next(r for r in world.audit.records if r.type == "consent.denied")
    assert refusal.outcome == "denied" and refusal.actor == f"{dept}-reg"
    assert refusal.subjects == ("110101199003070011",)  # the audit sink keys it; searchable


def test_the_owner_cannot_register_for_itself_as_consumer(world: World) -> None:
    with pytest.raises(Forbidden, match="own access"):
        world.record(registrar("health"), consumer="health")


def test_a_designated_manager_may_but_never_for_its_own_access(world: World) -> None:
    world.managers.designate("health", "civil", ADMIN)
    cid = world.record(registrar("civil"))
    assert world.consents.pause(cid, registrar("civil")).version == 2
    # the police, though designated too, cannot register consents that unlock its own reads
    world.managers.designate("health", "police", ADMIN)
    before = world.counts()
    with pytest.raises(Forbidden):
        world.record(registrar("police"))
    with pytest.raises(Forbidden):
        world.consents.resume(cid, registrar("police"))  # police reads it: 403, not 404
    assert world.counts() == before
    assert [d["action"] for d in world.denials()] == ["record", "resumed"]
    # withdrawn: the portal loses the right at once, for new and existing consents
    world.managers.withdraw("health", "civil", ADMIN)
    with pytest.raises(Forbidden):
        world.record(registrar("civil"))
    with pytest.raises(Forbidden):
        world.consents.resume(cid, registrar("civil"))


def test_only_admins_designate_and_refusals_write_nothing(world: World) -> None:
    steward = Principal("h-st", "health", frozenset({"steward"}), "j", "i", 0)
    for who in (steward, registrar("health"), registrar("civil")):
        with pytest.raises(Forbidden):
            world.managers.designate("health", "civil", who)
    assert world.counts()[2] == 0
    denied = [r for r in world.audit.records if r.outcome == "denied"]
    assert len(denied) == 3 and {r.type for r in denied} == {"consent.manager_designated"}
    with pytest.raises(NotFound):
        world.managers.designate("health", "nowhere", ADMIN)
    assert world.counts()[2] == 0


def test_a_foreign_registrar_cannot_change_a_consent_it_cannot_see(world: World) -> None:
    cid = world.record(registrar("health"))
    before = world.counts()
    with pytest.raises(NotFound):
        world.consents.revoke(cid, registrar("tax"))
    assert world.counts() == before


# -- item 14: the artefact's subject hash --------------------------------------------------
SPACE = [f"{n:06d}" for n in range(5_000)]  # a small id space anyone could enumerate


def candidates(subject: str, claims: dict[str, Any]) -> set[str]:
    """Every unkeyed hash of ``subject`` an attacker could try, with any claim as a salt."""
    raw = subject.encode()
    salts = (
        [b""]
        + [v.encode() for v in claims.values() if isinstance(v, str)]
        + [bytes.fromhex(v) for v in claims.values() if isinstance(v, str) and _hex(v)]
    )
    out: set[str] = set()
    for salt in salts:
        for d in (hashlib.sha256(salt + raw).digest(), hmac.new(salt, raw, "sha256").digest()):
            out |= {d.hex(), base64.urlsafe_b64encode(d).rstrip(b"=").decode()}
    return out


def _hex(v: str) -> bool:
    try:
        bytes.fromhex(v)
    except ValueError:
        return False
    return len(v) % 2 == 0


def test_an_artefact_does_not_allow_enumerating_its_subject(world: World) -> None:
    subject = SPACE[4_321]
    cid = world.record(registrar("health"), subject=subject)
    claims = verify_artefact(world.consents.get(cid, ADMIN).artefact, world.signer.jwks())
    assert "sub_salt" not in claims
    hits = [s for s in SPACE if claims["sub_hash"] in candidates(s, claims)]
    assert hits == []
    # the exchange itself (holding the key) still ties the artefact to its subject
    assert claims["sub_hash"] == world.signer.artefact_subject_of(subject)
    assert claims["sub_hash"] != world.signer.artefact_subject_of(SPACE[0])


def _legacy_artefact(signer: ConsentSigner, claims: dict[str, Any], subject: str) -> str:
    """What format 1 stored: the visible salt and SHA-256(salt || id)."""
    salt = "ab" * 16
    digest = hashlib.sha256(bytes.fromhex(salt) + subject.encode()).digest()
    body = {
        **claims,
        "ver": 1,
        "sub_salt": salt,
        "sub_hash": base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
    }
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    header = {"alg": "ES256", "kid": signer.kid, "typ": "consent+jws"}
    return jws.serialize_compact(header, payload, signer._key)


def test_stored_format_1_artefacts_are_re_signed_with_the_keyed_hash(world: World) -> None:
    subject = SPACE[77]
    cid = world.record(registrar("health"), subject=subject)
    world.consents.revoke(cid, registrar("health"))
    with world.sessions.begin() as s:
        for v in s.scalars(select(ConsentVersionRow)):
            v.artefact = _legacy_artefact(world.signer, artefact_claims(v.artefact), subject)
    legacy = verify_artefact(world.consents.get(cid, ADMIN).artefact, world.signer.jwks())
    assert [s for s in SPACE if legacy["sub_hash"] in candidates(s, legacy)] == [subject]

    assert world.consents.upgrade_artefacts() == 2
    assert world.consents.upgrade_artefacts() == 0  # idempotent
    versions = world.consents.versions(cid, ADMIN)
    for v, status in zip(versions, ("ACTIVE", "REVOKED"), strict=True):
        claims = verify_artefact(v.artefact, world.signer.jwks())
        assert claims["ver"] == 2 and "sub_salt" not in claims and "reissued_at" in claims
        assert claims["sub_hash"] == world.signer.artefact_subject_of(subject)
        assert claims["status"] == status and claims["jti"] == cid
        assert [s for s in SPACE if claims["sub_hash"] in candidates(s, claims)] == []
    # lookups by subject still work after the upgrade
    assert [c.id for c in world.consents.find(ADMIN, subject)] == [cid]

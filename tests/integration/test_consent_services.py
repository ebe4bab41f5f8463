"""Catalog, agreements and consents against a real (SQLite) control-plane database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from consent.agreements import Agreements, AgreementStatus
from consent.catalog import Catalog, CatalogEntry
from consent.consents import Consents, ConsentStatus
from consent.errors import AgreementNotFound, InvalidTransition, NotShared
from consent.managers import ConsentManagers
from consent.signing import ConsentSigner, verify_artefact
from exchange.auditing import MemoryAuditSink
from exchange.db import make_engine, migrate, session_factory
from exchange.errors import Conflict, DependencyUnavailable, Forbidden, InvalidInput, NotFound
from exchange.identity.service import IdentityService
from exchange.identity.tokens import Principal

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # a Wednesday
CITIZEN = "110101199003070011"


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    sessions: sessionmaker[Session]
    audit: MemoryAuditSink
    catalog: Catalog
    agreements: Agreements
    consents: Consents
    clock: Clock
    db_path: Path
    kinds: list[str] = field(default_factory=list)

    def audit_types(self) -> list[str]:
        return [r.type for r in self.audit.records]


def who(dept: str, *roles: str, client: str | None = None) -> Principal:
    return Principal(client or f"{dept}-app", dept, frozenset(roles), "jti", "iss", 0)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    db = tmp_path / "cp.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    sessions = session_factory(engine)
    ident = IdentityService(sessions)
    for dept in ("health", "police", "tax", "civil"):
        ident.create_department(dept, dept.title(), "city")
    audit, clock = MemoryAuditSink(), Clock()
    catalog = Catalog(sessions, audit)
    agreements = Agreements(sessions, audit, catalog, clock=clock)
    signer = ConsentSigner(b"m" * 32, "http://exchange.test")
    consents = Consents(sessions, audit, catalog, signer, clock=clock)
    # civil (the citizen portal) records consents for health's topics by designation
    ConsentManagers(sessions, audit).designate("health", "civil", who("exchange-admin", "admin"))
    audit.records.clear()
    yield World(sessions, audit, catalog, agreements, consents, clock, db)
    engine.dispose()


def make_entry(topic: str = "health.visits", share: str = "conditional") -> CatalogEntry:
    return CatalogEntry(
        topic=topic,
        owner="health",
        title="Clinic visits",
        description="Visits per clinic and citizen",
        update_cycle="daily",
        share_type=share,  # type: ignore[arg-type]
        value_subject=f"{topic}-value",
        partitions=3,
        cipher="SM4_GCM",
        legal_basis="Health Act §12" if share == "not_shared" else None,
        created_at=T0,
    )


def request(w: World, topic: str = "health.visits", **kw: object) -> str:
    args: dict[str, object] = {
        "topic": topic,
        "fields": ["city", "diagnosis", "id"],
        "purpose": "fraud checks",
        "valid_until": T0 + timedelta(days=90),
        **kw,
    }
    return w.agreements.request(who("police", "subscriber"), **args).id  # type: ignore[arg-type]


STEWARD = who("health", "steward")


# -- catalog -----------------------------------------------------------------------------
def test_catalog_create_get_search_delete(world: World) -> None:
    c = world.catalog
    c.create(make_entry())
    c.create(make_entry("health.beds", "unconditional"))
    assert c.get("health.visits").cipher == "SM4_GCM"
    assert [e.topic for e in c.search(q="CLINIC")] == ["health.beds", "health.visits"]
    assert [e.topic for e in c.search(share_type="unconditional")] == ["health.beds"]
    assert c.search(dept="police") == []
    assert c.search(q="100%") == []
    with pytest.raises(Conflict):
        c.create(make_entry())
    c.delete("health.beds")
    with pytest.raises(NotFound):
        c.get("health.beds")
    assert world.audit_types() == ["catalog.created", "catalog.created", "catalog.deleted"]


def test_catalog_validates(world: World) -> None:
    bad = make_entry("health.secret", "not_shared").__dict__ | {"legal_basis": None}
    with pytest.raises(InvalidInput, match="legal_basis"):
        world.catalog.create(CatalogEntry(**bad))
    with pytest.raises(InvalidInput, match="owner"):
        world.catalog.create(CatalogEntry(**make_entry().__dict__ | {"owner": "nobody"}))


# -- agreements --------------------------------------------------------------------------
def test_request_approve_narrow_and_grant(world: World) -> None:
    world.catalog.create(make_entry())
    aid = request(world)
    assert world.agreements.current_grant("police", "health.visits", T0) is None
    a = world.agreements.approve(aid, STEWARD, ["city", "diagnosis"])
    assert a.status is AgreementStatus.APPROVED and a.granted_fields == ("city", "diagnosis")
    g = world.agreements.current_grant("police", "health.visits", T0)
    assert g is not None and g.fields == {"city", "diagnosis"} and g.agreement_id == aid
    assert world.agreements.current_grant("tax", "health.visits", T0) is None
    assert world.agreements.current_grant("police", "health.visits", T0 + timedelta(91)) is None
    assert world.audit_types()[-2:] == ["agreement.requested", "agreement.approved"]


def test_narrowing_cannot_widen(world: World) -> None:
    world.catalog.create(make_entry())
    aid = request(world, fields=["city"])
    with pytest.raises(InvalidInput, match="narrow"):
        world.agreements.approve(aid, STEWARD, ["city", "hiv"])


def test_suspend_resume_revoke_take_effect_at_once(world: World) -> None:
    world.catalog.create(make_entry())
    aid = request(world)
    world.agreements.approve(aid, STEWARD)
    assert world.agreements.current_grant("police", "health.visits", T0) is not None
    world.agreements.suspend(aid, STEWARD, "audit pending")
    assert world.agreements.current_grant("police", "health.visits", T0) is None
    world.agreements.resume(aid, STEWARD)
    assert world.agreements.current_grant("police", "health.visits", T0) is not None
    world.agreements.revoke(aid, STEWARD)
    assert world.agreements.current_grant("police", "health.visits", T0) is None
    with pytest.raises(InvalidTransition):
        world.agreements.resume(aid, STEWARD)
    assert world.audit_types()[-3:] == [
        "agreement.suspended",
        "agreement.resumed",
        "agreement.revoked",
    ]


def test_change_listeners_hear_about_revocation(world: World) -> None:
    world.catalog.create(make_entry())
    heard: list[tuple[str, str]] = []
    world.agreements.on_change(lambda c, t: heard.append((c, t)))
    aid = request(world)
    world.agreements.approve(aid, STEWARD)
    world.agreements.revoke(aid, STEWARD)
    assert heard == [("police", "health.visits")] * 2


def test_only_the_owner_steward_decides(world: World) -> None:
    world.catalog.create(make_entry())
    aid = request(world)
    with pytest.raises(AgreementNotFound):  # another department's steward: looks absent
        world.agreements.approve(aid, who("tax", "steward"))
    with pytest.raises(Forbidden):  # the requester may see it but not decide it
        world.agreements.approve(aid, who("police", "steward", "subscriber"))
    with pytest.raises(Forbidden):
        world.agreements.approve(aid, who("exchange-admin", "admin"))
    with pytest.raises(Forbidden):
        world.agreements.approve(aid, who("exchange-admin", "auditor"))
    assert world.agreements.get(aid, who("exchange-admin", "auditor")).status == "pending"
    with pytest.raises(AgreementNotFound):
        world.agreements.get(aid, who("tax", "subscriber"))


def test_reject_needs_reason_and_ends_the_request(world: World) -> None:
    world.catalog.create(make_entry())
    aid = request(world)
    with pytest.raises(InvalidInput):
        world.agreements.reject(aid, STEWARD, " ")
    a = world.agreements.reject(aid, STEWARD, "no legal basis given")
    assert a.status is AgreementStatus.REJECTED and a.reason == "no legal basis given"
    with pytest.raises(InvalidTransition):
        world.agreements.approve(aid, STEWARD)
    request(world)  # a rejected request does not block a new one


def test_not_shared_and_duplicates_refused(world: World) -> None:
    world.catalog.create(make_entry("health.secret", "not_shared"))
    with pytest.raises(NotShared):
        request(world, "health.secret")
    world.catalog.create(make_entry())
    request(world)
    with pytest.raises(Conflict):
        request(world)


def test_expiry_and_overdue_follow_the_clock(world: World) -> None:
    world.catalog.create(make_entry())
    world.catalog.create(make_entry("health.beds"))
    late = request(world, "health.beds")
    aid = request(world, valid_until=T0 + timedelta(days=3))
    world.agreements.approve(aid, STEWARD)
    admin = who("exchange-admin", "admin")
    world.clock.now = T0 + timedelta(days=13)  # 9 working days later: not yet overdue
    assert world.agreements.list(admin, overdue=True) == []
    world.clock.now = T0 + timedelta(days=15)  # past 10 working days
    assert [a.id for a in world.agreements.list(admin, overdue=True)] == [late]
    flagged = world.agreements.flag_overdue()
    assert [a.id for a in flagged] == [late] and world.agreements.flag_overdue() == []
    assert world.audit.records[-1].type == "agreement.overdue"
    assert world.audit.records[-1].data["agreement_id"] == late
    assert world.agreements.get(aid, admin).status is AgreementStatus.EXPIRED
    assert world.agreements.current_grant("police", "health.visits", world.clock.now) is None
    with pytest.raises(InvalidTransition):
        world.agreements.suspend(aid, STEWARD)
    # visibility: departments see only agreements they are party to
    assert world.agreements.list(who("tax", "subscriber")) == []
    assert len(world.agreements.list(who("police", "subscriber"))) == 2


def test_field_names_checked_against_the_schema_when_known(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    IdentityService(sessions).create_department("health", "Health", "city")
    audit = MemoryAuditSink()
    catalog = Catalog(sessions, audit)
    catalog.create(make_entry())

    @dataclass
    class F:
        path: str
        data_subject: bool = False

    agreements = Agreements(sessions, audit, catalog, field_lookup=lambda e: [F("city")])
    args = {"topic": "health.visits", "purpose": "p", "valid_until": T0 + timedelta(days=900)}
    with pytest.raises(InvalidInput, match="unknown fields: hiv"):
        agreements.request(who("police", "subscriber"), fields=["hiv"], **args)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="data subject"):
        agreements.request(
            who("police", "subscriber"),
            fields=["city"],
            requires_subject_consent=True,
            **args,  # type: ignore[arg-type]
        )
    engine.dispose()


# -- consents ----------------------------------------------------------------------------
REGISTRAR = who("civil", "consent_registrar", client="civil-portal")


def record(w: World, subject: str = CITIZEN, **kw: object) -> str:
    args: dict[str, object] = {
        "subject": subject,
        "consumer": "police",
        "topic": "health.visits",
        "purpose": "fraud checks",
        "valid_until": T0 + timedelta(days=30),
        **kw,
    }
    return w.consents.record(REGISTRAR, **args).id  # type: ignore[arg-type]


def test_consent_lifecycle_versions_and_signed_artefacts(world: World) -> None:
    world.catalog.create(make_entry())
    cid = record(world, fields=["diagnosis"])
    world.consents.pause(cid, REGISTRAR)
    world.consents.resume(cid, REGISTRAR)
    c = world.consents.revoke(cid, REGISTRAR)
    assert c.status is ConsentStatus.REVOKED and c.version == 4
    versions = world.consents.versions(cid, REGISTRAR)
    assert [v.status.value for v in versions] == ["ACTIVE", "PAUSED", "ACTIVE", "REVOKED"]
    jwks = world.consents.jwks()
    claims = [verify_artefact(v.artefact, jwks) for v in versions]
    assert [x["consent_version"] for x in claims] == [1, 2, 3, 4]
    # every version names the same subject, by a keyed hash only the exchange can compute
    assert {x["sub_hash"] for x in claims} == {world.consents.signer.artefact_subject_of(CITIZEN)}
    assert all("sub_salt" not in x and x["ver"] == 2 for x in claims)
    assert claims[0]["fields"] == ["diagnosis"] and claims[0]["consumer"] == "police"
    assert world.audit_types()[-4:] == [
        "consent.recorded",
        "consent.paused",
        "consent.resumed",
        "consent.revoked",
    ]
    recorded = world.audit.records[-4]
    assert recorded.subjects == (CITIZEN,) and CITIZEN not in str(recorded.data)


def test_active_consents_for_a_page_of_subjects(world: World) -> None:
    world.catalog.create(make_entry())
    subjects = {f"3301{i:014d}" for i in range(1200)}  # more than one IN chunk
    ids = {s: record(world, s) for s in sorted(subjects)[:3]}
    gone = sorted(subjects)[1]
    world.consents.revoke(ids[gone], REGISTRAR)
    record(world, sorted(subjects)[2], consumer="tax")
    found = world.consents.active_consents("police", "health.visits", subjects, T0)
    assert set(found) == {sorted(subjects)[0], sorted(subjects)[2]}
    assert found[sorted(subjects)[0]].consent_id == ids[sorted(subjects)[0]]
    later = T0 + timedelta(days=31)
    assert world.consents.active_consents("police", "health.visits", subjects, later) == {}


def test_raw_subject_ids_never_reach_the_database(world: World) -> None:
    world.catalog.create(make_entry())
    record(world)
    world.sessions.kw["bind"].dispose()
    raw = b"".join(p.read_bytes() for p in world.db_path.parent.glob("cp.db*"))
    assert CITIZEN.encode() not in raw


def test_consent_permissions(world: World) -> None:
    world.catalog.create(make_entry())
    with pytest.raises(Forbidden):
        record_as = who("civil", "subscriber")
        world.consents.record(
            record_as,
            subject=CITIZEN,
            consumer="police",
            topic="health.visits",
            purpose="p",
            valid_until=T0 + timedelta(days=1),
        )
    cid = record(world)
    with pytest.raises(NotFound):
        world.consents.revoke(cid, who("tax", "consent_registrar"))
    assert world.consents.get(cid, who("police", "subscriber")).status is ConsentStatus.ACTIVE
    assert [c.id for c in world.consents.find(REGISTRAR, CITIZEN)] == [cid]
    assert world.consents.find(who("tax", "subscriber"), CITIZEN) == []


def test_store_down_fails_closed(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    sessions = session_factory(engine)
    audit = MemoryAuditSink()
    catalog = Catalog(sessions, audit)
    agreements = Agreements(sessions, audit, catalog)
    consents = Consents(sessions, audit, catalog, ConsentSigner(b"m" * 32, "x"))
    with pytest.raises(DependencyUnavailable):
        agreements.current_grant("police", "health.visits", T0)
    with pytest.raises(DependencyUnavailable):
        consents.active_consents("police", "health.visits", {CITIZEN}, T0)
    with pytest.raises(DependencyUnavailable):
        catalog.get("health.visits")

"""The authorization matrix, generated from the application's route table.

Every route of ``create_app`` x every caller class (anonymous; each department role of the
owning department; the same roles of another department; admin; auditor) is called over real
HTTP with real tokens, and the answer is checked against the declaration next to the route
(``@access`` in gateway/access.py): allowed → anything but 401/403 (and no 404 on
resource-scoped routes), refused → 401 without credentials, 403 (or 404 on resource-scoped
routes) with them. A route without a declaration, or without a request here, fails the suite.
Every refused cell must have left an ``access.denied`` audit event naming the caller.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from audit.service import Filters
from exchange.client import ExchangeClient
from gateway.access import CLIENT, Access, app_routes, declared
from gateway.console import csrf
from gateway.console.session import principal_of
from tests.support.gateway import ThreadGateway
from tests.support.matrix import REQUESTS, Caller, World, build_world, callers, send
from tests.support.writes import WriteSpy

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

Cell = tuple[str, str, str]  # method, route, caller


def routes(app: Any) -> Iterator[tuple[str, str, Access | None]]:
    for route in app_routes(app.routes):
        methods = sorted(getattr(route, "methods", None) or ["GET"])
        for method in methods:
            if method == "HEAD" or (method != "GET" and not isinstance(route, APIRoute)):
                continue
            path = getattr(route, "path", "")
            if path == "/registry/{rest:path}" and method != "GET":
                continue  # one method of the catch-all is enough
            yield method, path, declared(app, route)


def console_session(gateway: ThreadGateway, token: str, throwaway: bool = False) -> str:
    """The console session a person holding the token's roles would have after signing in."""
    p = gateway.services.tokens.verify(token)
    session = gateway.services.console_sessions.create(
        login=f"{p.client_id}#{uuid.uuid4().hex[:8]}" if throwaway else p.client_id,
        principal_id=p.client_id,
        department=p.department,
        roles=p.roles,
        issuer=p.issuer,
    )
    info = gateway.services.console_sessions.lookup(session)
    assert info is not None and principal_of(info).roles == p.roles
    return session


def outcome(status: int, decl: Access) -> str:
    if status == 401:
        return "unauthenticated"
    if status == 403 or (status == 404 and decl.scoped):
        return "deny"
    return "allow"


@pytest.fixture(scope="module")
def world(gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[World]:
    w = build_world(admin, gateway.url)
    yield w
    for c in w.clients.values():
        c.close()


def test_every_route_is_declared_and_exercised(gateway: ThreadGateway) -> None:
    missing = [f"{m} {p}" for m, p, decl in routes(gateway.app) if decl is None]
    assert not missing, f"routes without an @access declaration: {missing}"
    untested = [f"{m} {p}" for m, p, _ in routes(gateway.app) if (m, p) not in REQUESTS]
    assert not untested, f"routes without a matrix request (tests/support/matrix.py): {untested}"


def test_route_by_caller_matrix(
    gateway: ThreadGateway,
    admin: ExchangeClient,
    security_officer: ExchangeClient,
    world: World,
) -> None:
    since = datetime.now(UTC)
    svc = gateway.services
    who = callers(
        world,
        admin,
        security_officer,
        lambda c: frozenset(svc.identity.get_client(c).roles),
        lambda token, throwaway: console_session(gateway, token, throwaway),
        lambda anchor: csrf.token(svc.master_key, anchor),
    )
    wrong: dict[Cell, str] = {}
    denied: list[tuple[Cell, Caller, int, str]] = []
    refused_ids: dict[str, Cell] = {}  # request id -> the refused cell it was
    allowed_ids: set[str] = set()
    n = 0
    with (
        httpx.Client(base_url=gateway.url, timeout=30) as http,
        WriteSpy(svc.engine, svc.kafka) as spy,
    ):
        for method, path, decl in routes(gateway.app):
            assert decl is not None
            build = REQUESTS[(method, path)]
            for caller in who:
                req = build(world)
                n += 1
                rid = spy.cell = f"matrix-{n}"
                status = send(http, caller, req, rid)
                spy.cell = None
                cell = (method, path, caller.name)
                assert status < 500, f"{cell}: {status}"
                want = decl.expect(caller.relation, caller.roles)  # type: ignore[arg-type]
                got = outcome(status, decl)
                if got != want:
                    wrong[cell] = f"declared {want}, got {status}"
                elif got != "allow":
                    refused_ids[rid] = cell
                    if CLIENT not in decl.allowed:
                        denied.append((cell, caller, status, req.url))
                else:
                    allowed_ids.add(rid)
    assert not wrong, "answers that contradict the declarations:\n" + "\n".join(
        f"  {m} {p} as {c}: {v}" for (m, p, c), v in sorted(wrong.items())
    )
    assert_denials_audited(gateway, since, denied)
    assert_refusals_wrote_nothing(spy, refused_ids, allowed_ids)


# What a refusal may write: its own audit event (the log and its index), nothing else.
REFUSAL_MAY_WRITE = {"audit_events", "audit_head", "audit_checkpoints", "audit_subjects"}


def assert_refusals_wrote_nothing(
    spy: WriteSpy, refused: dict[str, Cell], allowed: set[str]
) -> None:
    """No refused request changed the control plane or put a record in Kafka. The observer
    must also have seen the allowed requests write (else it saw nothing at all)."""
    wrote = {
        refused[rid]: tables - REFUSAL_MAY_WRITE
        for rid in refused
        if (tables := spy.tables_written_by(rid)) - REFUSAL_MAY_WRITE
    }
    published = sorted({(refused[c], t) for c, t in spy.kafka_writes if c in refused})
    assert not wrote and not published, (
        "refused requests that wrote anyway:\n"
        + "\n".join(f"  {m} {p} as {c}: tables {sorted(t)}" for (m, p, c), t in wrote.items())
        + "\n".join(f"  {m} {p} as {c}: Kafka topic {t}" for (m, p, c), t in published)
    )
    assert any(spy.tables_written_by(rid) - REFUSAL_MAY_WRITE for rid in allowed)
    assert any(c in allowed for c, _ in spy.kafka_writes), "no publish was observed"


# Where a refusal is recorded: by the bearer check (auth.denied, 401), the role check and
# client management (authz.denied, with their details), else where it becomes a response
# (access.denied, gateway/denials.py); the registry's own write check (registry.denied). One
# event per refusal either way.
DENIAL_TYPES = ("access.denied", "auth.denied", "authz.denied", "registry.denied")
NOBODY = {"anonymous", "unknown"}


def assert_denials_audited(
    gateway: ThreadGateway, since: datetime, denied: list[tuple[Cell, Caller, int, str]]
) -> None:
    """Every refused cell (all of them, not a sample) left a denial event naming the caller."""
    review = gateway.services.audit_review
    seen: set[tuple[str, str, str]] = set()
    for kind in DENIAL_TYPES:
        after = -1
        while True:
            page = review.query(Filters(since=since, type=kind), after, 1000)
            for e in page:
                actor = "anonymous" if e.actor in NOBODY else e.actor
                where = e.data.get("route") or e.data.get("path", "")
                seen.add((actor, e.data.get("method", ""), where))
            if len(page) < 1000:
                break
            after = page[-1].index
    missing = [
        f"{m} {p} as {caller.name} ({status})"
        for (m, p, _), caller, status, url in denied
        if (caller.client_id or "anonymous", m, p) not in seen
        and (caller.client_id or "anonymous", m, url) not in seen
    ]
    assert not missing, "refusals without a denial event:\n" + "\n".join(missing)


def test_one_event_per_refusal(gateway: ThreadGateway, world: World) -> None:
    """The bearer check records its 401, the role check its 403: nothing records them twice."""
    since = datetime.now(UTC)
    stranger = world.clients["other:publisher"]
    r = httpx.post(
        f"{gateway.url}/v1/agreements/{world.agreement}/approve",
        headers={"Authorization": f"Bearer {stranger.token()}"},
        json={},
    )
    assert r.status_code == 403
    review = gateway.services.audit_review
    events = [
        e
        for kind in DENIAL_TYPES
        for e in review.query(Filters(since=since, type=kind, client=stranger.client_id), -1, 10)
    ]
    assert [e.type for e in events] == ["authz.denied"]


def _forged(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'ES256', 'typ': 'at+jwt'})}.{part(claims)}.c2lnbmF0dXJl"


def _denials(gateway: ThreadGateway, since: datetime, actor: str) -> list[dict[str, Any]]:
    found = gateway.services.audit_review.query(
        Filters(since=since, type="access.denied", client=actor), -1, 100
    )
    return [{"actor": e.actor, **e.data} for e in found]


def test_unverified_identity_is_recorded_as_such(gateway: ThreadGateway, world: World) -> None:
    since = datetime.now(UTC)
    victim = world.clients["own:publisher"].client_id
    token = _forged({"client_id": victim, "sub": victim, "exp": int(time.time()) + 60})
    r = httpx.get(f"{gateway.url}/registry/subjects", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    secret = "wrong-secret-not-logged"
    r = httpx.get(f"{gateway.url}/registry/config", auth=(victim, secret))
    assert r.status_code == 401
    events = _denials(gateway, since, victim)
    assert {(e["route"], e["status"], e["verified"]) for e in events} == {
        ("/registry/subjects", 401, False),
        ("/registry/config", 401, False),
    }
    assert token not in json.dumps(events) and secret not in json.dumps(events)


def test_basic_authenticated_refusal_is_verified(gateway: ThreadGateway, world: World) -> None:
    since = datetime.now(UTC)
    reader = world.clients["other:registry:read"]
    r = httpx.put(
        f"{gateway.url}/registry/config/{world.subject}",
        json={"compatibility": "NONE"},
        auth=(reader.client_id, reader._secret),
    )
    assert r.status_code == 403
    # The registry's write check records its own event for the verified caller, and only it.
    assert _denials(gateway, since, reader.client_id) == []
    found = gateway.services.audit_review.query(
        Filters(since=since, type="registry.denied", client=reader.client_id), -1, 100
    )
    assert [(e.actor, e.data["route"], e.data["subject"]) for e in found] == [
        (reader.client_id, "/registry/config/{subject}", world.subject)
    ]


def test_garbage_credentials_are_anonymous(gateway: ThreadGateway) -> None:
    since = datetime.now(UTC)
    header: str | bytes
    for header in (
        "Bearer not.a.jwt",
        "Bearer \u00e9t\u00e9".encode("latin-1"),
        "Basic !!!",
        "Token x",
    ):
        r = httpx.get(f"{gateway.url}/registry/contexts", headers={"Authorization": header})
        assert r.status_code == 401
    events = _denials(gateway, since, "anonymous")
    assert sum(e["route"] == "/registry/contexts" for e in events) >= 4


def test_audit_outage_turns_a_refusal_into_503_not_500(
    gateway: ThreadGateway, world: World
) -> None:
    """Fail closed: nobody probes unobserved while the audit log is down."""
    from exchange.errors import DependencyUnavailable

    sink: Any = gateway.services.audit

    def down(_: object) -> None:
        raise DependencyUnavailable("audit log down (test)")

    stranger = world.clients["other:steward"]
    token = stranger.token()
    sink.append = down
    try:
        anon = httpx.get(f"{gateway.url}/v1/departments")
        forbidden = httpx.post(
            f"{gateway.url}/v1/agreements/{world.agreement}/approve",
            headers={"Authorization": f"Bearer {token}"},
            json={},
        )
        registry = httpx.put(
            f"{gateway.url}/registry/config", json={"compatibility": "NONE"}, auth=("x", "y")
        )
    finally:
        del sink.append
    assert (anon.status_code, forbidden.status_code, registry.status_code) == (503, 503, 503)

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
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from audit.service import Filters
from exchange.client import ExchangeClient
from gateway.access import CLIENT, Access, app_routes, declared
from tests.support.gateway import ThreadGateway
from tests.support.matrix import REQUESTS, Caller, World, build_world, callers, send
from tests.support.scenario import new_client

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

Cell = tuple[str, str, str]  # method, route, caller

# Holes other engineers are closing (issue 12). Each entry is a cell whose answer today
# contradicts its declaration; the test fails when one closes so the entry gets removed.
# Remove the whole table once items 2 and 4 are merged.
_ITEM2 = "item 2, registry department scoping (registry engineer)"
_ITEM4 = "item 4, who may register consent (identity/consent engineer)"
_SUBJECT_WRITES = [
    ("POST", "/registry/subjects/{subject}/versions"),
    ("DELETE", "/registry/subjects/{subject}"),
    ("DELETE", "/registry/subjects/{subject}/versions/{version}"),
    ("PUT", "/registry/config/{subject}"),
    ("DELETE", "/registry/config/{subject}"),
    ("PUT", "/registry/mode/{subject}"),
    ("DELETE", "/registry/mode/{subject}"),
]
_GLOBAL_WRITES = [
    ("PUT", "/registry/config"),
    ("DELETE", "/registry/config"),
    ("PUT", "/registry/mode"),
]
PENDING: dict[Cell, str] = {
    **{(m, p, c): _ITEM2 for m, p in _SUBJECT_WRITES for c in ("other:registry:write", "admin")},
    **{
        (m, p, c): _ITEM2
        for m, p in _GLOBAL_WRITES
        for c in ("own:registry:write", "other:registry:write")
    },
    ("POST", "/v1/consents", "other:consent_registrar"): _ITEM4,
}


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


def outcome(status: int, decl: Access) -> str:
    if status == 401:
        return "unauthenticated"
    if status == 403 or (status == 404 and decl.scoped):
        return "deny"
    return "allow"


@pytest.fixture(scope="module")
def auditor(gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[ExchangeClient]:
    """The security officer: from the credentials file written at initialisation when there
    is one (issue 12 item 3), else minted for the test."""
    path = gateway.home / "auditor-credentials.json"
    if path.exists():
        creds = json.loads(path.read_text())
        client = ExchangeClient(gateway.url, creds["client_id"], creds["client_secret"])
    else:
        office = f"mx-audit-{int(time.time() * 1000) % 10**8}"
        admin.call("POST", "/v1/departments", json={"id": office, "name": "Audit", "level": "city"})
        client = new_client(admin, gateway.url, office, ["auditor"])
    with client:
        yield client


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
    gateway: ThreadGateway, admin: ExchangeClient, auditor: ExchangeClient, world: World
) -> None:
    since = datetime.now(UTC)
    identity = gateway.services.identity
    who = callers(world, admin, auditor, lambda c: frozenset(identity.get_client(c).roles))
    wrong: dict[Cell, str] = {}
    denied: list[tuple[Cell, Caller, int]] = []
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        for method, path, decl in routes(gateway.app):
            assert decl is not None
            build = REQUESTS[(method, path)]
            for caller in who:
                status = send(http, caller, build(world))
                cell = (method, path, caller.name)
                assert status < 500, f"{cell}: {status}"
                want = decl.expect(caller.relation, caller.roles)  # type: ignore[arg-type]
                got = outcome(status, decl)
                if got != want:
                    wrong[cell] = f"declared {want}, got {status}"
                elif got != "allow" and CLIENT not in decl.allowed:
                    denied.append((cell, caller, status))
    unexpected = {c: v for c, v in wrong.items() if c not in PENDING}
    closed = sorted(set(PENDING) - set(wrong))
    assert not unexpected, "answers that contradict the declarations:\n" + "\n".join(
        f"  {m} {p} as {c}: {v}" for (m, p, c), v in sorted(unexpected.items())
    )
    assert not closed, f"pending holes now closed, remove them from PENDING: {closed}"
    assert_denials_audited(gateway, since, denied)


def assert_denials_audited(
    gateway: ThreadGateway, since: datetime, denied: list[tuple[Cell, Caller, int]]
) -> None:
    """Every refused cell (all of them, not a sample) left an access.denied event."""
    review = gateway.services.audit_review
    seen: set[tuple[str, str, str, int]] = set()
    after = -1
    while True:
        page = review.query(Filters(since=since, type="access.denied"), after, 1000)
        for e in page:
            d = e.data
            seen.add((e.actor, d["method"], d["route"], d["status"]))
        if len(page) < 1000:
            break
        after = page[-1].index
    missing = [
        f"{m} {p} as {caller.name} ({status})"
        for (m, p, _), caller, status in denied
        if (caller.client_id or "anonymous", m, p, status) not in seen
    ]
    assert not missing, "refusals without an access.denied event:\n" + "\n".join(missing)


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
    r = httpx.get(f"{gateway.url}/v1/catalog", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    secret = "wrong-secret-not-logged"
    r = httpx.get(f"{gateway.url}/registry/subjects", auth=(victim, secret))
    assert r.status_code == 401
    events = _denials(gateway, since, victim)
    assert {(e["route"], e["status"], e["verified"]) for e in events} >= {
        ("/v1/catalog", 401, False),
        ("/registry/subjects", 401, False),
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
    events = _denials(gateway, since, reader.client_id)
    assert [(e["route"], e["status"], e["verified"]) for e in events] == [
        ("/registry/config/{subject}", 403, True)
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
        r = httpx.get(f"{gateway.url}/v1/departments", headers={"Authorization": header})
        assert r.status_code == 401
    events = _denials(gateway, since, "anonymous")
    assert sum(e["route"] == "/v1/departments" for e in events) >= 4


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

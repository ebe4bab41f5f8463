"""CSRF protection on every console form, over real HTTP against the real gateway: each POST
route of the console and of the sign-in pages — taken from the application's route table, so
a new form is covered the day it is added — refuses a missing token, a forged one and a
good one sent from another site, with 403, before doing anything, and audits each refusal
(``console.csrf_refused``)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from exchange.identity.roles import ALL_ROLES
from gateway.access import app_routes
from gateway.console import csrf
from tests.support.console import events
from tests.support.gateway import ThreadGateway

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

# A valid value for each path parameter (the refusal must come from the CSRF check, not from
# a path that does not parse).
PARAMS = {
    "dept": "csrf-dept",
    "client_id": "nobody",
    "login": "nobody",
    "agreement_id": "nobody",
    "subject": "csrf-dept.people-value",
    "sub_id": "nobody",
}
ACTIONS = {"/console/steward": "approve", "/console/admin/people": "disable"}


def form_routes(app: Any) -> list[str]:
    """Every POST path a browser form reaches: the console's and the sign-in pages'."""
    found = []
    for route in app_routes(app.routes):
        if not isinstance(route, APIRoute) or "POST" not in (route.methods or ()):
            continue
        if route.path.startswith(("/console", "/oauth/authorize")):
            found.append(route.path)
    return found


def concrete(path: str) -> str:
    action = next((a for p, a in ACTIONS.items() if path.startswith(p)), "disable")
    return re.sub(r"{(\w+)}", lambda m: PARAMS.get(m.group(1), action), path)


def test_every_form_refuses_a_missing_forged_or_cross_site_token(
    gateway: ThreadGateway, admin: Any
) -> None:
    since = datetime.now(UTC)
    paths = form_routes(gateway.app)
    assert len(paths) >= 19, paths  # sign-in, account, admin, people, developer, steward, audit
    # A session holding every role (no real person could): no page refuses it for its roles,
    # so any refusal below is the CSRF check's.
    login = f"csrf-{uuid.uuid4().hex[:6]}"
    session = gateway.services.console_sessions.create(
        login=login,
        principal_id=f"person:{login}",
        department=PARAMS["dept"],
        roles=ALL_ROLES,
        issuer=gateway.services.tokens.issuer,
    )
    good = csrf.token(gateway.services.master_key, session)
    attempts = [
        ({}, {}),  # no token at all
        ({"csrf": "forged"}, {}),
        ({"csrf": good}, {"Origin": "https://evil.example"}),  # the right token, another site
    ]
    wrong: list[str] = []
    with httpx.Client(
        base_url=gateway.url, cookies={"exchange_session": session}, timeout=30
    ) as http:
        for path in paths:
            for data, headers in attempts:
                r = http.post(concrete(path), data=data, headers=headers)
                if r.status_code != 403:
                    wrong.append(f"{path} {sorted(data)} {headers}: {r.status_code}")
        # The same session with its token from our own page: the CSRF check lets it through.
        r = http.post("/console/sign-out", data={"csrf": good})
        assert r.status_code == 200, r.text[:300]
    assert not wrong, wrong
    refused = events(gateway, since, "console.csrf_refused", f"person:{login}", 1000)
    routes = {e.data["route"] for e in refused}
    assert routes == set(paths), set(paths) ^ routes
    assert len(refused) == len(paths) * len(attempts)

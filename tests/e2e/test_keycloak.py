"""The external-issuer path against a real Keycloak (issue 18): tokens from Keycloak's token
endpoint over HTTP, realm ``deploy/keycloak/realm-exchange.json`` (the one compose.yaml
imports), presented to an in-process gateway that trusts the realm.

The last test stops Keycloak, so it stays last in this module and this module is the only one
using the session's Keycloak."""

from __future__ import annotations

import json
import secrets as pysecrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc import jws

from audit.service import Filters
from tests.conftest import make_client, make_department
from tests.support.console import launch, new_page
from tests.support.gateway import ThreadGateway
from tests.support.keycloak import Keycloak, KeycloakAdmin
from tests.support.scenario import PERSON_SCHEMA, person

# Room for the first test's setup on a loaded machine: Keycloak's start (and, without
# `make test`, its one-time download) happens there.
pytestmark = [
    pytest.mark.keycloak,
    pytest.mark.e2e,
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]

CLIENTS = (
    "civil-affairs-publisher",
    "health-subscriber",
    "exchange-operator",
    "exchange-reviewer",
    "reporting-service",
    "exchange-password-test",
)
USER = "health-analyst"
LEEWAY = 1  # the gateway's clock-skew bound, kept small so expiry is quick to wait out


@pytest.fixture
def kc_admin(keycloak: Keycloak) -> Iterator[KeycloakAdmin]:
    admin = keycloak.admin()  # a fresh admin token per test: it lives 60 s
    yield admin
    admin.close()


@pytest.fixture(scope="module")
def client_secrets(keycloak: Keycloak) -> dict[str, str]:
    """Keycloak generated these at import: the realm file holds no secret."""
    admin = keycloak.admin()
    try:
        return {c: admin.client_secret(c) for c in CLIENTS}
    finally:
        admin.close()


@pytest.fixture(scope="module")
def user_password(keycloak: Keycloak) -> str:
    password = pysecrets.token_urlsafe(16)
    admin = keycloak.admin()
    try:
        admin.set_password(USER, password)
    finally:
        admin.close()
    return password


def trusting(
    keycloak: Keycloak, kafka_bootstrap: str, tmp: pytest.TempPathFactory
) -> ThreadGateway:
    return ThreadGateway(
        tmp.mktemp("gw-keycloak"),
        kafka_bootstrap,
        oidc_issuer=keycloak.issuer,
        oidc_audience="exchange",
        oidc_allow_http=True,
        oidc_console_client_id="exchange-console",  # the console signs people in there
        token_leeway_seconds=LEEWAY,
    ).start()


@pytest.fixture(scope="module")
def gw(
    keycloak: Keycloak, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadGateway]:
    g = trusting(keycloak, kafka_bootstrap, tmp_path_factory)
    with g.admin() as admin:
        make_department(admin, "civil-affairs")
        make_department(admin, "health")
    yield g
    g.stop()


def token(keycloak: Keycloak, secrets: dict[str, str], client: str) -> str:
    r = keycloak.grant(client, secrets[client])
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def call(gw: ThreadGateway, bearer: str, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}"}
    return httpx.request(method, f"{gw.url}{path}", headers=headers, timeout=30, **kw)


def claims(jwt: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(jws.extract_compact(jwt.encode()).payload)
    return body


def kid(jwt: str) -> str:
    return str(jws.extract_compact(jwt.encode()).headers()["kid"])


def password_grant(keycloak: Keycloak, secrets: dict[str, str], password: str) -> httpx.Response:
    client = "exchange-password-test"
    form = {"grant_type": "password", "username": USER, "password": password, "scope": "openid"}
    return keycloak.grant(client, secrets[client], **form)


def agreement_request(topic: str) -> dict[str, Any]:
    return {
        "topic": topic,
        "fields": ["name"],
        "purpose": "public health follow-up",
        "legal_basis": "Regulation on government data sharing, art. 12",
        "valid_from": "2020-01-01T00:00:00Z",
        "valid_until": "2099-01-01T00:00:00Z",
    }


def test_service_account_tokens_carry_roles_and_department(
    keycloak: Keycloak, client_secrets: dict[str, str], gw: ThreadGateway, unique: str
) -> None:
    publisher = token(keycloak, client_secrets, "civil-affairs-publisher")
    operator = token(keycloak, client_secrets, "exchange-operator")
    subscriber = token(keycloak, client_secrets, "health-subscriber")
    # The realm's mappers, as Keycloak really issues them: audience, dept, roles in two places.
    assert claims(publisher)["aud"] == "exchange" and claims(publisher)["dept"] == "civil-affairs"
    assert claims(subscriber)["resource_access"]["exchange"]["roles"] == ["subscriber"]

    own, other = f"civil-affairs.kc-{unique}", f"health.kc-{unique}"
    schema = {"schema": json.dumps(PERSON_SCHEMA)}
    # registry:write from realm roles, within its department (dept claim) only.
    r = call(gw, publisher, "POST", f"/registry/subjects/{own}-value/versions", json=schema)
    assert r.status_code == 200, r.text
    r = call(gw, publisher, "POST", f"/registry/subjects/{other}-value/versions", json=schema)
    assert r.status_code == 403, r.text
    with gw.admin() as admin, make_client(admin, gw.url, "health", ["registry:write"]) as health:
        health.call("POST", f"/registry/subjects/{other}-value/versions", json=schema)
    for topic, owner in ((own, "civil-affairs"), (other, "health")):
        subject = f"{topic}-value"
        body = {"name": topic, "owner": owner, "partitions": 1, "value_subject": subject}
        r = call(gw, operator, "POST", "/v1/topics", json={**body, "title": "Residents"})
        assert r.status_code == 201, r.text

    records = {"records": [{"key": "k1", "value": person(1)}]}
    r = call(gw, publisher, "POST", f"/v1/topics/{own}/records", json=records)
    assert r.status_code == 200, r.text
    r = call(gw, publisher, "POST", f"/v1/topics/{other}/records", json=records)
    assert r.status_code == 403, r.text  # another department's topic
    # The client role subscriber (resource_access.exchange) may request an agreement; the
    # publisher, without that role, may not. Neither holds the other's powers.
    r = call(gw, subscriber, "POST", "/v1/agreements", json=agreement_request(own))
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pending"
    r = call(gw, publisher, "POST", "/v1/agreements", json=agreement_request(own))
    assert r.status_code == 403, r.text
    r = call(gw, subscriber, "POST", f"/v1/topics/{own}/records", json=records)
    assert r.status_code == 403, r.text
    r = call(gw, subscriber, "POST", "/v1/departments", json={"id": f"kc-{unique}", "name": "X"})
    assert r.status_code == 403


def test_id_and_refresh_tokens_are_refused(
    keycloak: Keycloak, client_secrets: dict[str, str], user_password: str, gw: ThreadGateway
) -> None:
    body = password_grant(keycloak, client_secrets, user_password).json()
    assert call(gw, body["access_token"], "GET", "/v1/departments").status_code == 200
    # The ID token names the exchange as an audience too (the realm's mapper): refused for
    # being an ID token, not only for its audience.
    assert "exchange" in claims(body["id_token"])["aud"]
    for refused in (body["id_token"], body["refresh_token"]):
        r = call(gw, refused, "GET", "/v1/departments")
        assert r.status_code == 401, r.text


def test_a_token_for_another_audience_is_refused(
    keycloak: Keycloak, client_secrets: dict[str, str], gw: ThreadGateway
) -> None:
    other = token(keycloak, client_secrets, "reporting-service")
    assert claims(other)["aud"] == "reporting"  # publisher role and a registered department
    r = call(gw, other, "GET", "/v1/departments")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_auditor_and_admin_stay_apart(
    keycloak: Keycloak, client_secrets: dict[str, str], kc_admin: KeycloakAdmin, gw: ThreadGateway
) -> None:
    reviewer = token(keycloak, client_secrets, "exchange-reviewer")
    operator = token(keycloak, client_secrets, "exchange-operator")
    assert call(gw, reviewer, "GET", "/v1/audit/checkpoint").status_code == 200
    assert call(gw, operator, "GET", "/v1/audit/checkpoint").status_code == 403
    # Keycloak misconfigured to give the reviewer a writing role too: refused whole.
    account = kc_admin.service_account_id("exchange-reviewer")
    kc_admin.realm_roles(account, ["publisher"], add=True)
    try:
        both = token(keycloak, client_secrets, "exchange-reviewer")
        assert {"auditor", "publisher"} <= set(claims(both)["realm_access"]["roles"])
        r = call(gw, both, "GET", "/v1/audit/checkpoint")
        assert r.status_code == 403, r.text
    finally:
        kc_admin.realm_roles(account, ["publisher"], add=False)


def test_a_user_disabled_in_keycloak_stops_working_within_the_token_lifetime(
    keycloak: Keycloak,
    client_secrets: dict[str, str],
    user_password: str,
    kc_admin: KeycloakAdmin,
    gw: ThreadGateway,
) -> None:
    body = password_grant(keycloak, client_secrets, user_password).json()
    access = body["access_token"]
    assert call(gw, access, "GET", "/v1/departments").status_code == 200
    kc_admin.set_enabled(USER, False)
    try:
        assert password_grant(keycloak, client_secrets, user_password).status_code == 400
        client = "exchange-password-test"
        form = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
        assert keycloak.grant(client, client_secrets[client], **form).status_code == 400
        # The access token already out lives its (short, per-client) lifetime, then no more.
        time.sleep(max(0.0, claims(access)["exp"] + LEEWAY + 1 - time.time()))
        assert call(gw, access, "GET", "/v1/departments").status_code == 401
    finally:
        kc_admin.set_enabled(USER, True)


def test_keycloak_key_rotation_is_picked_up_without_a_restart(
    keycloak: Keycloak, client_secrets: dict[str, str], kc_admin: KeycloakAdmin, gw: ThreadGateway
) -> None:
    verifier = gw.services.external
    assert verifier is not None
    before = token(keycloak, client_secrets, "health-subscriber")
    assert call(gw, before, "GET", "/v1/departments").status_code == 200
    attempts = verifier.fetch_attempts
    kc_admin.add_rsa_key("rsa-rotated", priority=200)
    kc_admin.remove_key_provider("rsa-generated")
    after = token(keycloak, client_secrets, "health-subscriber")
    assert kid(after) != kid(before)
    # An unknown kid triggers one JWKS refetch, at most every min_refresh_seconds (10 s).
    deadline = time.monotonic() + 15
    while (status := call(gw, after, "GET", "/v1/departments").status_code) == 401:
        assert time.monotonic() < deadline, "rotated key never picked up"
        time.sleep(1)
    assert status == 200
    assert verifier.fetch_attempts == attempts + 1
    # The refetched key set no longer holds the removed key: its tokens stop verifying.
    assert call(gw, before, "GET", "/v1/departments").status_code == 401


def test_a_person_signs_in_to_the_console_at_keycloak(
    keycloak: Keycloak, gw: ThreadGateway, user_password: str
) -> None:
    """Authorization code + PKCE S256 with the realm's public console client: the person
    types the password on Keycloak's own login page and lands in the console with the
    department and roles the API's claim mapping gives their token."""
    with launch() as browser:
        page = new_page(browser, gw.url, "en")
        page.goto("/console/dev/catalog")  # no session: sent to Keycloak to sign in
        page.wait_for_url(f"{keycloak.issuer}/protocol/openid-connect/auth**")
        assert "code_challenge_method=S256" in page.url
        page.fill("#username", USER)
        page.fill("#password", user_password)
        page.click("#kc-login")
        page.wait_for_url(f"{gw.url}/console/dev/catalog**")
        assert "health" in page.inner_text("header")  # the dept claim
        assert "Catalog" in page.inner_text("nav.side")
        # subscriber + registry:read from Keycloak's realm roles: no administrator page
        response = page.goto("/console/admin/departments")
        assert response is not None and response.status == 403
    sessions = gw.services.audit_review.query(Filters(type="console.signin"), -1, 1000)
    assert any(e.department == "health" for e in sessions)


def test_keycloak_stopped_means_503_for_its_tokens_and_own_tokens_still_work(
    keycloak: Keycloak,
    client_secrets: dict[str, str],
    gw: ThreadGateway,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Runs last: it stops the session's Keycloak."""
    cold = trusting(keycloak, kafka_bootstrap, tmp_path_factory)  # no keys cached yet
    try:
        with cold.admin() as admin:
            make_department(admin, "health")
        issued = token(keycloak, client_secrets, "health-subscriber")
        keycloak.stop()
        r = call(cold, issued, "GET", "/v1/departments")
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "dependency_unavailable"
        with cold.admin() as admin:
            assert admin.request("GET", "/v1/departments").status_code == 200
        # A gateway that already holds the key keeps verifying until the token expires.
        assert call(gw, issued, "GET", "/v1/departments").status_code == 200
    finally:
        cold.stop()

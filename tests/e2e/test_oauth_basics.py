"""Token endpoint basics over HTTP against the session gateway."""

from __future__ import annotations

import httpx

from exchange.client import ExchangeClient
from tests.conftest import make_client, make_department
from tests.support.gateway import ThreadGateway


def test_client_credentials_token_and_scope_narrowing(
    gateway: ThreadGateway, admin: ExchangeClient, unique: str
) -> None:
    dept = f"dept-{unique}"
    make_department(admin, dept)
    client = make_client(admin, gateway.url, dept, ["publisher", "registry:read"])
    full = httpx.post(
        f"{gateway.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client.client_id, client._secret),
    ).json()
    assert set(full["scope"].split()) == {"publisher", "registry:read"}
    narrow = httpx.post(
        f"{gateway.url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "publisher",
            "client_id": client.client_id,
            "client_secret": client._secret,
        },
    ).json()
    assert narrow["scope"] == "publisher"
    too_wide = httpx.post(
        f"{gateway.url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "admin"},
        auth=(client.client_id, client._secret),
    )
    assert too_wide.status_code == 400
    assert too_wide.json()["error"] == "invalid_scope"


def test_wrong_secret_is_invalid_client(gateway: ThreadGateway, admin: ExchangeClient) -> None:
    r = httpx.post(
        f"{gateway.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(admin.client_id, "wrong"),
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


def test_admin_routes_need_a_token(gateway: ThreadGateway) -> None:
    r = httpx.post(f"{gateway.url}/v1/departments", json={"id": "x1", "name": "x", "level": "city"})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"

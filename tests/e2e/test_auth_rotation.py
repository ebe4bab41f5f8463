"""Signing-key rotation with overlap, over HTTP."""

from __future__ import annotations

import httpx
from joserfc import jws

from exchange.client import ExchangeClient
from tests.conftest import make_client, make_department
from tests.support.gateway import ThreadGateway


def kid_of(token: str) -> str:
    return str(jws.extract_compact(token.encode()).headers()["kid"])


def jwks_kids(gw: ThreadGateway) -> list[str]:
    return [k["kid"] for k in httpx.get(f"{gw.url}/oauth/jwks").json()["keys"]]


def test_tokens_signed_before_rotation_keep_verifying(
    gateway: ThreadGateway, admin: ExchangeClient, unique: str
) -> None:
    dept = f"rot-{unique}"
    make_department(admin, dept)
    client = make_client(admin, gateway.url, dept, ["subscriber"])
    before = client.token()
    old_kid = kid_of(before)

    rotated = admin.call("POST", "/v1/admin/signing-keys/rotate")

    assert rotated["kid"] != old_kid
    assert {rotated["kid"], old_kid} <= set(rotated["jwks_kids"])
    assert {rotated["kid"], old_kid} <= set(jwks_kids(gateway))
    r = httpx.get(f"{gateway.url}/v1/departments", headers={"Authorization": f"Bearer {before}"})
    assert r.status_code == 200  # the overlap: old tokens verify until they expire
    client._token = None
    assert kid_of(client.token()) == rotated["kid"]  # new tokens use the new key
    client.close()


def test_only_admins_rotate(gateway: ThreadGateway, admin: ExchangeClient, unique: str) -> None:
    dept = f"rot2-{unique}"
    make_department(admin, dept)
    steward = make_client(admin, gateway.url, dept, ["steward", "publisher"])
    r = steward.request("POST", "/v1/admin/signing-keys/rotate")
    assert r.status_code == 403
    assert httpx.post(f"{gateway.url}/v1/admin/signing-keys/rotate").status_code == 401
    steward.close()


def test_auth_routes_are_documented(gateway: ThreadGateway) -> None:
    spec = httpx.get(f"{gateway.url}/openapi.json").json()
    for path in (
        "/oauth/token",
        "/oauth/jwks",
        "/oauth/revoke",
        "/oauth/introspect",
        "/v1/admin/signing-keys/rotate",
        "/v1/departments/{dept}/clients/{client_id}/jwk",
    ):
        assert path in spec["paths"], path
    token_form = spec["components"]["schemas"]["Body_token_oauth_token_post"]["properties"]
    assert {"client_assertion", "client_assertion_type"} <= set(token_form)

"""``private_key_jwt`` client authentication (RFC 7523) at the token endpoint, over HTTP."""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import ECKey, Key

from exchange.client import ExchangeClient
from tests.conftest import make_client, make_department
from tests.support.gateway import ThreadGateway

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def assertion(gw: ThreadGateway, client_id: str, key: Key, **overrides: Any) -> str:
    """A client assertion; an override of None leaves that claim out."""
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": f"{gw.url}/oauth/token",
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
        **overrides,
    }
    claims = {k: v for k, v in claims.items() if v is not None}
    alg = "ES256" if isinstance(key, ECKey) else "RS256"
    return jwt.encode({"alg": alg, "kid": key.kid}, claims, key)


def token_request(gw: ThreadGateway, signed: str, **extra: str) -> httpx.Response:
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
        **extra,
    }
    return httpx.post(f"{gw.url}/oauth/token", data=data)


@pytest.fixture
def keyed(gateway: ThreadGateway, admin: ExchangeClient, unique: str) -> tuple[str, str, ECKey]:
    dept = f"pkj-{unique}"
    make_department(admin, dept)
    client = make_client(admin, gateway.url, dept, ["publisher", "subscriber"])
    key = ECKey.generate_key("P-256", private=True)
    key.ensure_kid()
    body = admin.call(
        "PUT",
        f"/v1/departments/{dept}/clients/{client.client_id}/jwk",
        json={"jwk": key.as_dict(private=False)},
    )
    assert "d" not in body["jwk"]
    client.close()
    return dept, client.client_id, key


def test_signed_assertion_gets_a_token(
    gateway: ThreadGateway, keyed: tuple[str, str, ECKey]
) -> None:
    _, client_id, key = keyed
    r = token_request(gateway, assertion(gateway, client_id, key), scope="subscriber")
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert r.json()["scope"] == "subscriber"
    me = httpx.get(f"{gateway.url}/v1/departments", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    meta = httpx.get(f"{gateway.url}/.well-known/oauth-authorization-server").json()
    assert "private_key_jwt" in meta["token_endpoint_auth_methods_supported"]


def test_replayed_assertion_is_refused(
    gateway: ThreadGateway, keyed: tuple[str, str, ECKey]
) -> None:
    _, client_id, key = keyed
    signed = assertion(gateway, client_id, key)
    assert token_request(gateway, signed).status_code == 200
    again = token_request(gateway, signed)
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "http://127.0.0.1:1/oauth/token"},
        {"iss": "someone-else"},
        {"exp": 1_000_000},
        {"exp": int(time.time()) + 3600},
        {"jti": None},
    ],
    ids=["audience", "issuer", "expired", "too-long-lived", "no-jti"],
)
def test_bad_assertions_are_invalid_client(
    gateway: ThreadGateway, keyed: tuple[str, str, ECKey], overrides: dict[str, Any]
) -> None:
    _, client_id, key = keyed
    signed = assertion(gateway, client_id, key, **overrides)
    r = token_request(gateway, signed)
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"


def test_assertion_signed_with_another_key(
    gateway: ThreadGateway, keyed: tuple[str, str, ECKey]
) -> None:
    _, client_id, key = keyed
    other = ECKey.generate_key("P-256", private=True, parameters={"kid": key.kid})
    assert token_request(gateway, assertion(gateway, client_id, other)).status_code == 401


def test_assertion_with_a_secret_too_or_another_client_id(
    gateway: ThreadGateway, keyed: tuple[str, str, ECKey]
) -> None:
    _, client_id, key = keyed
    r = token_request(gateway, assertion(gateway, client_id, key), client_secret="x")
    assert r.status_code == 401
    r = token_request(gateway, assertion(gateway, client_id, key), client_id="someone-else")
    assert r.status_code == 401


def test_disabled_client_cannot_use_its_key(
    gateway: ThreadGateway, admin: ExchangeClient, keyed: tuple[str, str, ECKey]
) -> None:
    dept, client_id, key = keyed
    admin.call("POST", f"/v1/departments/{dept}/clients/{client_id}/disable")
    assert token_request(gateway, assertion(gateway, client_id, key)).status_code == 401


def test_key_registration_rules(
    gateway: ThreadGateway, admin: ExchangeClient, keyed: tuple[str, str, ECKey]
) -> None:
    dept, client_id, key = keyed
    url = f"/v1/departments/{dept}/clients/{client_id}/jwk"
    private = admin.request("PUT", url, json={"jwk": key.as_dict(private=True)})
    assert private.status_code == 422
    weak_private = rsa.generate_private_key(65537, 1024)  # noqa: S505 - must be refused
    n = weak_private.public_key().public_numbers().n.to_bytes(128, "big")
    weak = {"kty": "RSA", "e": "AQAB", "n": base64.urlsafe_b64encode(n).rstrip(b"=").decode()}
    assert admin.request("PUT", url, json={"jwk": weak}).status_code == 422
    hmac_key = {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}
    assert admin.request("PUT", url, json={"jwk": hmac_key}).status_code == 422
    other_dept = admin.request(
        "PUT",
        f"/v1/departments/exchange-admin/clients/{client_id}/jwk",
        json={"jwk": key.as_dict(private=False)},
    )
    assert other_dept.status_code == 404

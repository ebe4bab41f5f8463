"""Authentication and authorization failures over HTTP against a real gateway: 401/403,
problem+json, ``WWW-Authenticate`` — and never a way in."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from exchange.client import ApiError, ExchangeClient
from tests.conftest import make_client, make_department
from tests.support.forge import alg_none, hs256_with
from tests.support.gateway import ThreadGateway

DEPARTMENTS = "/v1/departments"


def get(gw: ThreadGateway, token: str | None, header: str | None = None) -> httpx.Response:
    auth = header if header is not None else f"Bearer {token}"
    return httpx.get(f"{gw.url}{DEPARTMENTS}", headers={"Authorization": auth} if auth else {})


def assert_unauthorized(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["status"] == 401


def assert_forbidden(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "forbidden"


def token_for(gw: ThreadGateway, client_id: str, secret: str, scope: str | None = None) -> str:
    data = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    r = httpx.post(f"{gw.url}/oauth/token", data=data, auth=(client_id, secret))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return str(body["access_token"])


def admin_creds(gw: ThreadGateway) -> tuple[str, str]:
    c = json.loads((gw.home / "admin-credentials.json").read_text())
    return c["client_id"], c["client_secret"]


def claims(gw: ThreadGateway, **overrides: Any) -> dict[str, Any]:
    """Claims exactly like the gateway's own admin token; overrides make them wrong."""
    cid, _ = admin_creds(gw)
    now = int(time.time())
    return {
        "iss": gw.services.tokens.issuer,
        "sub": cid,
        "aud": gw.services.tokens.audience,
        "client_id": cid,
        "dept": "exchange-admin",
        "scope": "admin",
        "iat": now,
        "nbf": now,
        "exp": now + 120,
        "jti": secrets.token_urlsafe(16),
        "ver": 1,
        **overrides,
    }


def mint(gw: ThreadGateway, **overrides: Any) -> str:
    """Signed with the gateway's real signing key: only the claims can be at fault."""
    kid, key = gw.services.tokens._signing_key()
    return jwt.encode({"alg": "ES256", "kid": kid, "typ": "at+jwt"}, claims(gw, **overrides), key)


def our_kid(gw: ThreadGateway) -> str:
    return str(httpx.get(f"{gw.url}/oauth/jwks").json()["keys"][0]["kid"])


def test_no_token(gateway: ThreadGateway) -> None:
    r = httpx.get(f"{gateway.url}{DEPARTMENTS}")
    assert_unauthorized(r)
    assert r.json()["code"] == "missing_token"
    assert "error=" not in r.headers["www-authenticate"]  # RFC 6750 §3.1: no credentials


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer x y", "Basic dXNlcjpwYXNz", "Token abc", "Bearer not-a-jwt", "Bearer a.b.c"],
)
def test_malformed_authorization_header(gateway: ThreadGateway, header: str) -> None:
    assert_unauthorized(get(gateway, None, header))


def test_a_correctly_minted_token_works(gateway: ThreadGateway) -> None:
    # The control for the claim tests below: the minting itself is sound.
    assert get(gateway, mint(gateway)).status_code == 200


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "somebody-else"},
        {"aud": ["somebody-else", "another"]},
        {"iss": "http://127.0.0.1:1"},
        {"exp": int(time.time()) - 3600},
        {"nbf": int(time.time()) + 3600},
    ],
    ids=["wrong-audience", "wrong-audiences", "wrong-issuer", "expired", "not-yet-valid"],
)
def test_wrong_claims_with_a_genuine_signature(
    gateway: ThreadGateway, overrides: dict[str, Any]
) -> None:
    assert_unauthorized(get(gateway, mint(gateway, **overrides)))


def test_forged_signature_with_our_kid(gateway: ThreadGateway) -> None:
    other = ECKey.generate_key("P-256", private=True)
    token = jwt.encode(
        {"alg": "ES256", "kid": our_kid(gateway), "typ": "at+jwt"}, claims(gateway), other
    )
    assert_unauthorized(get(gateway, token))


def test_tampered_payload(gateway: ThreadGateway) -> None:
    header, _, sig = mint(gateway, scope="publisher").split(".")
    forged_payload = mint(gateway, scope="admin").split(".")[1]
    assert_unauthorized(get(gateway, f"{header}.{forged_payload}.{sig}"))


def test_alg_none(gateway: ThreadGateway) -> None:
    assert_unauthorized(get(gateway, alg_none(claims(gateway), our_kid(gateway))))


def test_hs256_keyed_with_our_public_key(gateway: ThreadGateway) -> None:
    jwk = httpx.get(f"{gateway.url}/oauth/jwks").json()["keys"][0]
    public = ECKey.import_key(jwk)
    for secret in (public.as_pem(private=False), json.dumps(jwk).encode()):
        assert_unauthorized(get(gateway, hs256_with(secret, claims(gateway), jwk["kid"])))


def test_revoked_token(gateway: ThreadGateway, admin: ExchangeClient, unique: str) -> None:
    dept = f"rev-{unique}"
    make_department(admin, dept)
    client = make_client(admin, gateway.url, dept, ["subscriber"])
    token = token_for(gateway, client.client_id, client._secret)
    assert get(gateway, token).status_code == 200
    r = httpx.post(
        f"{gateway.url}/oauth/revoke",
        data={"token": token},
        auth=(client.client_id, client._secret),
    )
    assert r.status_code == 200
    assert_unauthorized(get(gateway, token))


def test_disabled_client(gateway: ThreadGateway, admin: ExchangeClient, unique: str) -> None:
    dept = f"dis-{unique}"
    make_department(admin, dept)
    client = make_client(admin, gateway.url, dept, ["subscriber"])
    token = token_for(gateway, client.client_id, client._secret)
    assert get(gateway, token).status_code == 200
    admin.call("POST", f"{DEPARTMENTS}/{dept}/clients/{client.client_id}/disable")
    assert_unauthorized(get(gateway, token))  # tokens already issued stop working at once
    r = httpx.post(
        f"{gateway.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client.client_id, client._secret),
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


def test_scope_the_route_does_not_accept(gateway: ThreadGateway) -> None:
    # The admin client, but with a token narrowed to registry:read.
    token = token_for(gateway, *admin_creds(gateway), scope="registry:read")
    r = httpx.post(
        f"{gateway.url}{DEPARTMENTS}",
        json={"id": "never-made", "name": "x", "level": "city"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert_forbidden(r)
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert 'scope="admin"' in r.headers["www-authenticate"]


def test_admin_and_auditor_cannot_be_one_client(
    gateway: ThreadGateway, admin: ExchangeClient, unique: str
) -> None:
    dept = f"sod-{unique}"
    make_department(admin, dept)
    for roles in (["admin", "auditor"], ["steward", "auditor"], ["nonsense"]):
        r = admin.request(
            "POST", f"{DEPARTMENTS}/{dept}/clients", json={"name": "x", "roles": roles}
        )
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"


def test_auditor_cannot_administer(
    gateway: ThreadGateway, admin: ExchangeClient, security_officer: ExchangeClient, unique: str
) -> None:
    dept = f"aud-{unique}"
    make_department(admin, dept)
    auditor = make_client(security_officer, gateway.url, dept, ["auditor"])
    r = auditor.request(
        "POST", DEPARTMENTS, json={"id": f"x-{unique}", "name": "x", "level": "city"}
    )
    assert_forbidden(r)
    r = auditor.request(
        "POST", f"{DEPARTMENTS}/{dept}/clients", json={"name": "x", "roles": ["publisher"]}
    )
    assert_forbidden(r)
    assert_forbidden(auditor.request("POST", "/v1/admin/signing-keys/rotate"))
    auditor.close()


@pytest.fixture(scope="module")
def short_lived(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadGateway]:
    home: Path = tmp_path_factory.mktemp("gw-short-ttl")
    gw = ThreadGateway(home, kafka_bootstrap, token_ttl_seconds=1, token_leeway_seconds=0)
    yield gw.start()
    gw.stop()


def test_expired_token(short_lived: ThreadGateway) -> None:
    token = token_for(short_lived, *admin_creds(short_lived))
    # No 200 check first: on a loaded machine the 1 s may be over before the first call.
    deadline = time.monotonic() + 5  # a bound, not a timing assertion
    while (r := get(short_lived, token)).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert_unauthorized(r)
    assert "expired" in r.json()["detail"]  # refused for its age, not for anything else


def test_sdk_replaces_a_refused_token_transparently(gateway: ThreadGateway) -> None:
    """What every CLI command relies on: a token refused while the SDK thought it good
    (revoked here; expired under clock skew alike) is replaced on the 401 and the call — or
    the stream, as `exchange tail` opens it — goes through. Revocation, not a short TTL: a
    1 s token can expire again on a loaded machine before the retry arrives."""
    creds = admin_creds(gateway)

    def revoke(token: str) -> None:
        r = httpx.post(f"{gateway.url}/oauth/revoke", data={"token": token}, auth=creds)
        assert r.status_code == 200
        assert get(gateway, token).status_code == 401  # the gateway refuses it now

    with ExchangeClient(gateway.url, *creds) as sdk:
        first = sdk.token()
        revoke(first)
        assert sdk.call("GET", "/v1/departments") is not None
        second = sdk.token()
        assert second != first
        revoke(second)
        with pytest.raises(ApiError) as refused:
            next(sdk.stream("no-such-subscription"))
        assert refused.value.status == 403  # admin is no subscriber: refused as such, not 401
        assert sdk.token() not in (first, second)


def test_introspection_shows_only_own_tokens(
    gateway: ThreadGateway, admin: ExchangeClient, unique: str
) -> None:
    dept = f"intro-{unique}"
    make_department(admin, dept)
    a = make_client(admin, gateway.url, dept, ["subscriber"])
    b = make_client(admin, gateway.url, dept, ["subscriber"])
    token = token_for(gateway, a.client_id, a._secret)

    def introspect(cid: str, secret: str) -> dict[str, Any]:
        r = httpx.post(f"{gateway.url}/oauth/introspect", data={"token": token}, auth=(cid, secret))
        assert r.status_code == 200
        body: dict[str, Any] = r.json()
        return body

    assert introspect(a.client_id, a._secret)["active"] is True
    assert introspect(b.client_id, b._secret) == {"active": False}
    assert introspect(*admin_creds(gateway))["dept"] == dept
    a.close()
    b.close()

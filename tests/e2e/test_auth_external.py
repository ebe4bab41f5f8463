"""External issuer mode over HTTP: a gateway trusting a local OIDC issuer (Keycloak's stand-in,
see tests/support/oidc_issuer.py) next to its own tokens."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from joserfc.jwk import RSAKey

from exchange.kafka.broker import free_port
from tests.conftest import make_department
from tests.support.forge import alg_none, hs256_with
from tests.support.gateway import ThreadGateway
from tests.support.oidc_issuer import OidcIssuer

DEPT = "kc-civil-affairs"


@pytest.fixture(scope="module")
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer(audience="exchange-api") as iss:
        yield iss


@pytest.fixture(scope="module")
def gw(
    issuer: OidcIssuer, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadGateway]:
    g = ThreadGateway(
        tmp_path_factory.mktemp("gw-oidc"),
        kafka_bootstrap,
        oidc_issuer=issuer.url,
        oidc_audience=issuer.audience,
    )
    g.start()
    with g.admin() as admin:
        make_department(admin, DEPT)
    yield g
    g.stop()


def call(gw: ThreadGateway, token: str, method: str = "GET", **kw: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.request(method, f"{gw.url}/v1/departments", headers=headers, **kw)  # type: ignore[arg-type]


def new_department(unique: str) -> dict[str, str]:
    return {"id": f"kc-{unique}", "name": "Made by Keycloak admin", "level": "city"}


def test_external_token_is_accepted_and_roles_apply(
    gw: ThreadGateway, issuer: OidcIssuer, unique: str
) -> None:
    assert call(gw, issuer.token(DEPT, ["subscriber"])).status_code == 200
    r = call(gw, issuer.token(DEPT, ["subscriber"]), "POST", json=new_department(unique))
    assert r.status_code == 403
    r = call(gw, issuer.token(DEPT, ["admin"]), "POST", json=new_department(unique))
    assert r.status_code == 201, r.text


def test_own_tokens_still_work(gw: ThreadGateway) -> None:
    with gw.admin() as admin:
        assert admin.request("GET", "/v1/departments").status_code == 200


def test_department_from_a_configured_claim_must_be_registered(
    gw: ThreadGateway, issuer: OidcIssuer
) -> None:
    r = call(gw, issuer.token("not-registered", ["subscriber"]))
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert call(gw, issuer.token(None, ["subscriber"])).status_code == 403


@pytest.mark.parametrize(
    "overrides",
    [{"aud": "other-client"}, {"exp": 1_000_000}, {"nbf": 4_000_000_000}, {"typ": "ID"}],
    ids=["audience", "expired", "not-yet-valid", "id-token"],
)
def test_external_claim_checks(
    gw: ThreadGateway, issuer: OidcIssuer, overrides: dict[str, object]
) -> None:
    r = call(gw, issuer.token(DEPT, ["admin"], **overrides))
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_alg_none_and_hs_rs_confusion_are_refused(gw: ThreadGateway, issuer: OidcIssuer) -> None:
    claims = issuer.claims(DEPT, ["admin"])
    kid = issuer.current.kid or ""
    assert call(gw, alg_none(claims, kid)).status_code == 401
    assert isinstance(issuer.current, RSAKey)
    confused = hs256_with(issuer.current.as_pem(private=False), claims, kid, typ="JWT")
    assert call(gw, confused).status_code == 401


def test_forged_issuer_token(gw: ThreadGateway, issuer: OidcIssuer) -> None:
    other = RSAKey.generate_key(2048, private=True)
    claims = issuer.claims(DEPT, ["admin"])
    forged = issuer.sign(claims, key=other, header={"kid": issuer.current.kid})
    assert call(gw, forged).status_code == 401


def test_unreachable_issuer_fails_closed_with_503(
    issuer: OidcIssuer, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/realms/gov"  # nothing listens there
    g = ThreadGateway(
        tmp_path_factory.mktemp("gw-oidc-dead"),
        kafka_bootstrap,
        oidc_issuer=dead,
        oidc_audience=issuer.audience,
    ).start()
    try:
        r = call(g, issuer.token(DEPT, ["admin"], iss=dead))
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "dependency_unavailable"
    finally:
        g.stop()

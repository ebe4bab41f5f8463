"""Pure parts of the external-issuer verifier: claim mapping, key/alg pinning, URL rules."""

from __future__ import annotations

import pytest
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from exchange.errors import ConfigurationError, Forbidden
from exchange.identity.external import (
    claim_at,
    department_of,
    expected_alg,
    external_verifier,
    require_safe_url,
    roles_of,
)

SOURCES = ("realm_access", "resource_access", "scope")


def test_each_key_type_verifies_exactly_one_algorithm() -> None:
    assert expected_alg(RSAKey.generate_key(2048)) == "RS256"
    assert expected_alg(ECKey.generate_key("P-256")) == "ES256"
    assert expected_alg(OKPKey.generate_key("Ed25519")) == "EdDSA"
    assert expected_alg(ECKey.generate_key("P-384")) is None
    assert expected_alg(OctKey.generate_key(256)) is None  # never an HMAC secret


def test_department_from_flat_nested_and_single_valued_claims() -> None:
    assert department_of({"dept": "civil-affairs"}, "dept") == "civil-affairs"
    assert department_of({"dept": ["health"]}, "dept") == "health"
    assert department_of({"attributes": {"dept": "tax"}}, "attributes.dept") == "tax"
    assert claim_at({"a.b": 1, "a": {"b": 2}}, "a.b") == 1  # a flat claim wins


@pytest.mark.parametrize("claims", [{}, {"dept": ""}, {"dept": ["a", "b"]}, {"dept": 7}])
def test_missing_or_ambiguous_department_is_forbidden(claims: dict[str, object]) -> None:
    with pytest.raises(Forbidden):
        department_of(claims, "dept")


def test_roles_are_the_union_of_sources_intersected_with_ours() -> None:
    claims = {
        "realm_access": {"roles": ["publisher", "offline_access", 3]},
        "resource_access": {
            "exchange-api": {"roles": ["registry:read"]},
            "other-client": {"roles": ["admin"]},
        },
        "scope": "openid subscriber",
    }
    assert roles_of(claims, SOURCES, "exchange-api") == {
        "publisher",
        "registry:read",
        "subscriber",
    }
    assert roles_of(claims, ("scope",), "exchange-api") == {"subscriber"}
    assert roles_of({}, SOURCES, "exchange-api") == frozenset()


def test_roles_that_break_separation_of_duties_are_refused() -> None:
    with pytest.raises(Forbidden):
        roles_of({"realm_access": {"roles": ["admin", "auditor"]}}, SOURCES, "aud")


@pytest.mark.parametrize(
    "url", ["https://kc.example.gov/realms/gov", "http://127.0.0.1:8080/x", "http://localhost/x"]
)
def test_safe_issuer_urls(url: str) -> None:
    require_safe_url(url)


@pytest.mark.parametrize("url", ["http://kc.example.gov/realms/gov", "ftp://x/y", "https:///x"])
def test_unsafe_issuer_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        require_safe_url(url)


def test_issuer_without_audience_is_a_configuration_error() -> None:
    assert external_verifier(None, None, "dept") is None
    with pytest.raises(ConfigurationError):
        external_verifier("https://kc.example.gov/realms/gov", None, "dept")


def test_plain_http_beyond_loopback_only_when_explicitly_allowed() -> None:
    require_safe_url("http://keycloak:8080/realms/exchange", allow_http=True)
    with pytest.raises(ConfigurationError):
        require_safe_url("http://keycloak:8080/realms/exchange")
    with pytest.raises(ConfigurationError):
        require_safe_url("ftp://keycloak/realms/exchange", allow_http=True)

"""The external-issuer verifier against a real (local) OIDC issuer over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

from exchange.errors import DependencyUnavailable, Forbidden
from exchange.identity.external import ExternalConfig, ExternalVerifier
from exchange.identity.roles import WRITING_ROLES
from exchange.identity.tokens import InvalidToken
from tests.support.forge import alg_none, hs256_with
from tests.support.oidc_issuer import OidcIssuer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer() as iss:
        yield iss


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(issuer: OidcIssuer, clock: Clock) -> ExternalVerifier:
    config = ExternalConfig(issuer=issuer.url, audience=issuer.audience, leeway_seconds=0)
    return ExternalVerifier(
        config, department_exists=lambda d: d in {"civil-affairs", "health"}, clock=clock
    )


def test_keycloak_shaped_token_maps_to_a_principal(
    issuer: OidcIssuer, verifier: ExternalVerifier
) -> None:
    token = issuer.token("civil-affairs", ["publisher", "subscriber"])
    assert verifier.accepts(token)
    p = verifier.verify(token)
    assert (p.department, p.client_id, p.external) == ("civil-affairs", "oidc:dept-portal", True)
    assert p.roles == {"publisher", "subscriber"}  # offline_access etc. are not our roles
    assert p.issuer == issuer.url


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")  # EdDSA name (RFC 9864)
@pytest.mark.parametrize("key", [ECKey.generate_key("P-256"), OKPKey.generate_key("Ed25519")])
def test_es256_and_eddsa_keys_verify(
    issuer: OidcIssuer, verifier: ExternalVerifier, key: ECKey | OKPKey
) -> None:
    issuer.add_key(key)
    token = issuer.sign(issuer.claims("health", ["subscriber"]), key=key)
    assert verifier.verify(token).department == "health"


def test_alg_none_is_refused(issuer: OidcIssuer, verifier: ExternalVerifier) -> None:
    token = alg_none(issuer.claims("health", ["admin"]), kid=issuer.current.kid or "")
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_hs256_keyed_with_the_rsa_public_key_is_refused(
    issuer: OidcIssuer, verifier: ExternalVerifier
) -> None:
    assert isinstance(issuer.current, RSAKey)
    for secret in (
        issuer.current.as_pem(private=False),
        issuer.current.as_pem(private=False).strip(),
    ):
        token = hs256_with(secret, issuer.claims("health", ["admin"]), issuer.current.kid or "")
        with pytest.raises(InvalidToken):
            verifier.verify(token)


def test_rs256_header_on_an_ec_key_is_refused(
    issuer: OidcIssuer, verifier: ExternalVerifier
) -> None:
    ec = issuer.add_key(ECKey.generate_key("P-256", private=True))
    token = issuer.sign(issuer.claims("health", []), key=ec, header={"alg": "ES256"})
    verifier.verify(token)  # fine as ES256 ...
    forged = issuer.sign(issuer.claims("health", []), header={"kid": ec.kid})  # RS256, EC kid
    with pytest.raises(InvalidToken, match="does not match"):
        verifier.verify(forged)


def test_forged_signature_with_the_issuers_kid_is_refused(
    issuer: OidcIssuer, verifier: ExternalVerifier
) -> None:
    other = RSAKey.generate_key(2048, private=True)
    token = issuer.sign(issuer.claims("health", []), key=other, header={"kid": issuer.current.kid})
    with pytest.raises(InvalidToken):
        verifier.verify(token)


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "someone-else"},
        {"iss": "http://127.0.0.1:1/realms/evil"},
        {"exp": 1_000_000},
        {"nbf": 4_000_000_000},
        {"typ": "ID"},
        {"typ": "Refresh"},
    ],
    ids=["audience", "issuer", "expired", "not-yet-valid", "id-token", "refresh-token"],
)
def test_claim_checks(
    issuer: OidcIssuer, verifier: ExternalVerifier, overrides: dict[str, object]
) -> None:
    with pytest.raises(InvalidToken):
        verifier.verify(issuer.token("health", ["subscriber"], **overrides))


def test_missing_exp_is_refused(issuer: OidcIssuer, verifier: ExternalVerifier) -> None:
    claims = issuer.claims("health", [])
    del claims["exp"]
    with pytest.raises(InvalidToken):
        verifier.verify(issuer.sign(claims))


def test_unregistered_department_and_duty_conflicts_are_forbidden(
    issuer: OidcIssuer, verifier: ExternalVerifier
) -> None:
    with pytest.raises(Forbidden):
        verifier.verify(issuer.token("nowhere", ["publisher"]))
    # An external token holding auditor and any writing role is refused whole (we do not
    # guess which of the two the issuer meant), whichever claim carries the roles.
    for writing in sorted(WRITING_ROLES):
        with pytest.raises(Forbidden, match="may not be held together"):
            verifier.verify(issuer.token("health", ["auditor", writing]))
    assert verifier.verify(issuer.token("health", ["auditor", "registry:read"])).roles == {
        "auditor",
        "registry:read",
    }


def test_issuer_key_rotation_is_picked_up_with_a_bounded_refetch_rate(
    issuer: OidcIssuer, verifier: ExternalVerifier, clock: Clock
) -> None:
    verifier.verify(issuer.token("health", []))
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (1, 1)
    issuer.rotate()
    fresh = issuer.token("health", [])
    with pytest.raises(InvalidToken, match="unknown key"):
        verifier.verify(fresh)  # within min_refresh_seconds of the last fetch: no refetch
    assert issuer.jwks_fetches == 1
    clock.now += 10
    assert verifier.verify(fresh).department == "health"  # unknown kid → one refetch
    assert issuer.jwks_fetches == 2
    made_up = issuer.sign(issuer.claims("health", []), header={"kid": "made-up"})
    for _ in range(5):
        with pytest.raises(InvalidToken):
            verifier.verify(made_up)
    assert issuer.jwks_fetches == 2  # a flood of unknown kids does not hammer the issuer
    assert issuer.discovery_fetches == 1


def test_issuer_unreachable_fails_closed_without_hammering_it(
    issuer: OidcIssuer, clock: Clock
) -> None:
    token = issuer.token("health", [])
    issuer.close()
    verifier = ExternalVerifier(
        ExternalConfig(issuer=issuer.url, audience=issuer.audience), clock=clock
    )
    for _ in range(3):
        with pytest.raises(DependencyUnavailable):
            verifier.verify(token)
    assert verifier.fetch_attempts == 1  # the next attempt waits min_refresh_seconds
    clock.now += 10
    with pytest.raises(DependencyUnavailable):
        verifier.verify(token)
    assert verifier.fetch_attempts == 2


def test_keys_older_than_the_max_age_are_refetched(
    issuer: OidcIssuer, verifier: ExternalVerifier, clock: Clock
) -> None:
    token = issuer.token("health", [])
    verifier.verify(token)
    clock.now += 3601
    verifier.verify(token)
    assert issuer.jwks_fetches == 2


def test_discovery_naming_another_issuer_fails_closed(issuer: OidcIssuer) -> None:
    # Configured with a path the issuer does not own: discovery 404s or names another issuer.
    verifier = ExternalVerifier(
        ExternalConfig(issuer=issuer.url + "-other", audience=issuer.audience)
    )
    with pytest.raises(DependencyUnavailable):
        verifier.verify(issuer.token("health", [], iss=issuer.url + "-other"))


def test_weak_rsa_and_hmac_keys_in_the_jwks_are_ignored(
    issuer: OidcIssuer, verifier: ExternalVerifier
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak_private = rsa.generate_private_key(65537, 1024)  # noqa: S505 - must be ignored
    with pytest.warns(SecurityWarning):  # the JOSE library only warns about short keys
        weak = issuer.add_key(RSAKey.import_key(weak_private))
    token = issuer.sign(issuer.claims("health", []), key=weak)
    with pytest.raises(InvalidToken, match="unknown key"):
        verifier.verify(token)


def test_principal_names_the_subject(issuer: OidcIssuer, verifier: ExternalVerifier) -> None:
    p = verifier.verify(issuer.token("health", [], sub="user-42"))
    assert (p.client_id, p.subject) == ("oidc:dept-portal", "user-42")

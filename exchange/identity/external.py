"""Accept access tokens of an external OIDC issuer (e.g. Keycloak) next to our own.

The issuer's discovery document names its JWKS; keys are cached and refetched when a token
carries an unknown ``kid`` (at most once per ``min_refresh_seconds``, so a flood of made-up
kids cannot hammer the issuer). Verification pins the algorithm to the key type — RS256 for
RSA, ES256 for P-256, EdDSA for Ed25519 — so ``alg=none`` and the HS256-with-the-RSA-public-key
confusion never reach a signature check. ``iss``, ``aud`` and ``exp`` are required; ``nbf`` and
``iat`` are checked when present.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key, import_key

from exchange.errors import ConfigurationError, DependencyUnavailable, Forbidden
from exchange.identity.roles import ALL_ROLES, check_roles
from exchange.identity.tokens import InvalidToken, Principal

# The only algorithm each key type may verify; anything else (none, HS*, PS*) is refused.
_ALG_FOR_KEY: dict[tuple[str, str | None], str] = {
    ("RSA", None): "RS256",
    ("EC", "P-256"): "ES256",
    ("OKP", "Ed25519"): "EdDSA",
}
ALLOWED_ALGORITHMS = frozenset(_ALG_FOR_KEY.values())
MIN_RSA_BITS = 2048
# External client ids live in their own namespace: our ids never contain ':', so a Keycloak
# client named like one of ours cannot act as it (ownership checks compare client ids).
EXTERNAL_CLIENT_PREFIX = "oidc:"
ROLE_SOURCES = ("realm_access", "resource_access", "scope")
# Keycloak marks ID and refresh tokens in a "typ" claim; only access tokens authorise calls.
_REFUSED_TOKEN_TYPES = frozenset({"id", "refresh", "logout"})

Fetch = Callable[[str], Mapping[str, Any]]


@dataclass(frozen=True)
class ExternalConfig:
    issuer: str
    audience: str
    department_claim: str = "dept"  # dotted path, e.g. "attributes.dept"
    role_sources: tuple[str, ...] = ROLE_SOURCES
    min_refresh_seconds: float = 10.0  # rate bound for refetching the JWKS
    max_key_age_seconds: float = 3600.0  # refetch eventually so removed keys stop verifying
    leeway_seconds: int = 30
    http_timeout_seconds: float = 5.0
    allow_http: bool = False  # plain HTTP to non-loopback hosts: private networks only


def expected_alg(key: Key) -> str | None:
    """The one algorithm ``key`` may verify, or None if we do not accept this key type."""
    crv = None if key.key_type == "RSA" else key.get("crv")
    return _ALG_FOR_KEY.get((key.key_type, crv if isinstance(crv, str) else None))


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or by dotted path into nested objects when no flat claim has it."""
    if path in claims:
        return claims[path]
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def department_of(claims: Mapping[str, Any], claim: str) -> str:
    value = claim_at(claims, claim)
    # Keycloak user attributes are often multi-valued; exactly one department is unambiguous.
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str) or not value:
        raise Forbidden(f"token has no single department in claim {claim!r}")
    return value


def roles_of(claims: Mapping[str, Any], sources: Iterable[str], audience: str) -> frozenset[str]:
    """Our roles found in the configured claim sources; unknown names are ignored."""
    found: set[str] = set()
    for source in sources:
        if source == "realm_access":
            found |= _string_list(claim_at(claims, "realm_access.roles"))
        elif source == "resource_access":
            per_client = claim_at(claims, "resource_access")
            if isinstance(per_client, Mapping):
                found |= _string_list(claim_at(per_client.get(audience) or {}, "roles"))
        elif source == "scope":
            scope = claims.get("scope")
            found |= set(scope.split()) if isinstance(scope, str) else set()
    roles = frozenset(found & ALL_ROLES)
    if problems := check_roles(roles):
        raise Forbidden("; ".join(problems))
    return roles


def _string_list(value: Any) -> set[str]:
    return {v for v in value if isinstance(v, str)} if isinstance(value, list) else set()


def require_safe_url(url: str, allow_http: bool = False) -> None:
    """HTTPS, or plain HTTP to a loopback address (or anywhere when explicitly allowed)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        if allow_http:
            return
        host = parts.hostname
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if loopback:
            return
    raise ConfigurationError(
        "OIDC URLs must be https (plain http only to loopback unless EXCHANGE_OIDC_ALLOW_HTTP)"
    )


def http_fetch(timeout: float, allow_http: bool = False) -> Fetch:
    def fetch(url: str) -> Mapping[str, Any]:
        require_safe_url(url, allow_http)
        try:
            r = httpx.get(url, timeout=timeout, follow_redirects=False)
            r.raise_for_status()
            body = r.json()
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise DependencyUnavailable("the OIDC issuer cannot be reached") from exc
        if not isinstance(body, Mapping):
            raise DependencyUnavailable("the OIDC issuer sent a malformed document")
        return body

    return fetch


def unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims *before* any verification: for routing and key lookup only."""
    try:
        compact = jws.extract_compact(token.encode())
        claims = json.loads(compact.payload)
    except (JoseError, ValueError, UnicodeError) as exc:
        raise InvalidToken("token signature or format is invalid") from exc
    if not isinstance(claims, dict):
        raise InvalidToken("token signature or format is invalid")
    return dict(compact.headers()), claims


class ExternalVerifier:
    """Verifies an external issuer's access tokens and maps them to a :class:`Principal`."""

    def __init__(
        self,
        config: ExternalConfig,
        *,
        fetch: Fetch | None = None,
        department_exists: Callable[[str], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        require_safe_url(config.issuer, config.allow_http)
        self.config = config
        self._fetch = fetch or http_fetch(config.http_timeout_seconds, config.allow_http)
        self._department_exists = department_exists
        self._clock = clock
        self._lock = threading.Lock()
        self._jwks_uri: str | None = None
        self._keys: dict[str, Key] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self.fetch_attempts = 0

    def accepts(self, token: str) -> bool:
        """Whether the token claims to come from this issuer (unverified; routing only)."""
        try:
            _, claims = unverified_parts(token)
        except InvalidToken:
            return False
        return claims.get("iss") == self.config.issuer

    def __call__(self, token: str) -> Principal:
        return self.verify(token)

    def verify(self, token: str) -> Principal:
        header, _ = unverified_parts(token)
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALLOWED_ALGORITHMS or not isinstance(kid, str):
            raise InvalidToken("token algorithm or key id is not accepted")
        key = self._key(kid)
        if expected_alg(key) != alg or key.get("alg") not in (None, alg):
            raise InvalidToken("token algorithm does not match the issuer's key")
        try:
            claims = jwt.decode(token, key, algorithms=[alg]).claims
        except (JoseError, ValueError) as exc:
            raise InvalidToken("token signature or format is invalid") from exc
        self._validate(claims)
        return self._principal(token, claims)

    # -- claims --------------------------------------------------------------------------
    def _validate(self, claims: dict[str, Any]) -> None:
        registry = jwt.JWTClaimsRegistry(
            leeway=self.config.leeway_seconds,
            iss={"essential": True, "value": self.config.issuer},
            aud={"essential": True, "value": self.config.audience},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise InvalidToken(f"token rejected: {exc.error}") from exc
        if str(claims.get("typ", "")).lower() in _REFUSED_TOKEN_TYPES:
            raise InvalidToken("not an access token")

    def _principal(self, token: str, claims: dict[str, Any]) -> Principal:
        department = department_of(claims, self.config.department_claim)
        if self._department_exists is not None and not self._department_exists(department):
            raise Forbidden("the token's department is not registered here")
        client = claims.get("azp") or claims.get("client_id") or claims.get("sub")
        if not isinstance(client, str) or not client:
            raise InvalidToken("token names no client or subject")
        jti = claims.get("jti")
        return Principal(
            client_id=f"{EXTERNAL_CLIENT_PREFIX}{client}",
            department=department,
            roles=roles_of(claims, self.config.role_sources, self.config.audience),
            token_id=jti if isinstance(jti, str) else hashlib.sha256(token.encode()).hexdigest(),
            issuer=self.config.issuer,
            expires_at=int(claims["exp"]),
            external=True,
            subject=str(claims.get("sub", client)),
        )

    # -- keys ----------------------------------------------------------------------------
    def _key(self, kid: str) -> Key:
        with self._lock:
            now = self._clock()
            usable = (
                self._fetched_at is not None
                and now - self._fetched_at <= self.config.max_key_age_seconds
            )
            # Attempts (successful or not) are rate-bounded, so neither made-up kids nor a
            # down issuer turn every request into an outbound call.
            may_attempt = (
                self._attempted_at is None
                or now - self._attempted_at >= self.config.min_refresh_seconds
            )
            if (not usable or kid not in self._keys) and may_attempt:
                self._attempted_at = now
                self.fetch_attempts += 1
                self._refresh(now)
                usable = True
            if not usable:
                raise DependencyUnavailable("the OIDC issuer's keys are unavailable")
            key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("token was signed with an unknown key")
        return key

    def _refresh(self, now: float) -> None:
        if self._jwks_uri is None:
            self._jwks_uri = self._discover()
        document = self._fetch(self._jwks_uri)
        self._keys = dict(_signing_keys(document.get("keys")))
        self._fetched_at = now

    def _discover(self) -> str:
        doc = self._fetch(f"{self.config.issuer.rstrip('/')}/.well-known/openid-configuration")
        # OIDC Discovery §4.3: the document must name exactly the issuer we were told to trust.
        if doc.get("issuer") != self.config.issuer or not isinstance(doc.get("jwks_uri"), str):
            raise DependencyUnavailable("the OIDC discovery document does not match the issuer")
        uri: str = doc["jwks_uri"]
        require_safe_url(uri, self.config.allow_http)
        return uri


def rsa_bits(n: Any) -> int:
    """Bit length of a JWK's RSA modulus; checked before import (the JOSE library only warns)."""
    if not isinstance(n, str):
        return 0
    try:
        return int.from_bytes(base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))).bit_length()
    except ValueError:
        return 0


def _signing_keys(keys: Any) -> Iterable[tuple[str, Key]]:
    """Public signing keys with a kid and a type we accept; encryption keys are skipped."""
    for data in keys if isinstance(keys, list) else []:
        if not isinstance(data, dict) or data.get("use", "sig") != "sig":
            continue
        if "d" in data or not isinstance(data.get("kid"), str):
            continue  # never accept a private key (or a keyless entry) from the network
        if data.get("kty") == "RSA" and rsa_bits(data.get("n")) < MIN_RSA_BITS:
            continue
        try:
            key = import_key(data)
        except (JoseError, ValueError, TypeError):
            continue
        if expected_alg(key) is not None:
            yield data["kid"], key


def external_verifier(
    issuer: str | None,
    audience: str | None,
    department_claim: str,
    department_exists: Callable[[str], bool] | None = None,
    *,
    allow_http: bool = False,
    leeway_seconds: int = 30,
) -> ExternalVerifier | None:
    """The verifier for the configured issuer, or None when no external issuer is set."""
    if not issuer:
        return None
    if not audience:
        raise ConfigurationError("EXCHANGE_OIDC_AUDIENCE is required with EXCHANGE_OIDC_ISSUER")
    config = ExternalConfig(
        issuer=issuer,
        audience=audience,
        department_claim=department_claim,
        allow_http=allow_http,
        leeway_seconds=leeway_seconds,
    )
    return ExternalVerifier(config, department_exists=department_exists)

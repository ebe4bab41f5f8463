"""Site-to-site calls signed with the site identity key, no OAuth client needed at the other end.

For calls between the *sites themselves* (not on behalf of a department): the caller signs a
one-minute JWT (EdDSA, ``typ`` ``site+jwt``) with its site identity key and sends it as
``Authorization: Site <jwt>``. Claims: ``iss`` = ``sub`` = the calling site's name, ``aud`` =
the called site's name, ``iat``/``exp`` (60 s), ``jti``, ``htm``/``htu`` = the method and path,
``bh`` = base64url SHA-256 of the request body — so a captured assertion cannot carry another
body, route or audience, and it expires within a minute. The called site accepts it only from a
site its admin added (``exchange federation sites add``: name and public key), the same trust
the site link (:mod:`exchange.federation.link`) rests on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from exchange.errors import DependencyUnavailable, ExchangeError, NotFound

SCHEME = "Site"
TYP = "site+jwt"
LIFETIME_S = 60
LEEWAY_S = 30
TIMEOUT_S = 10.0


class BadSiteAssertion(ExchangeError):
    """The site assertion is missing, malformed, expired, or not signed by a known site."""

    code = "invalid_site_assertion"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def body_hash(body: bytes) -> str:
    return _b64(hashlib.sha256(body).digest())


def _private(key: Ed25519PrivateKey) -> OKPKey:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return OKPKey.import_key(pem)


def _public(key: Ed25519PublicKey) -> OKPKey:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)})


def assertion(
    site: str, key: Ed25519PrivateKey, audience: str, method: str, path: str, body: bytes
) -> str:
    now = int(time.time())
    claims = {
        "iss": site,
        "sub": site,
        "aud": audience,
        "iat": now,
        "exp": now + LIFETIME_S,
        "jti": secrets.token_urlsafe(16),
        "htm": method,
        "htu": path,
        "bh": body_hash(body),
    }
    return jwt.encode({"alg": "EdDSA", "typ": TYP}, claims, _private(key), algorithms=["EdDSA"])


def claimed_site(token: str) -> str | None:
    """The ``iss`` an assertion claims, unverified (for the audit trail of a refusal only)."""
    try:
        part = token.split(".")[1]
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))).get("iss")
    except (IndexError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and len(value) <= 31 else None


def verify(
    token: str,
    *,
    key_of: Callable[[str], Ed25519PublicKey | None],
    audience: str,
    method: str,
    path: str,
    body: bytes,
    now: float | None = None,
) -> str:
    """The calling site's name, once everything about the assertion checks out."""
    site = claimed_site(token)
    if site is None:
        raise BadSiteAssertion("the site assertion is not a JWT naming its site")
    pub = key_of(site)
    if pub is None:
        raise BadSiteAssertion(f"{site!r} is not a site we know")
    try:
        tok = jwt.decode(token, _public(pub), algorithms=["EdDSA"])
    except (JoseError, ValueError):
        raise BadSiteAssertion(f"the assertion is not signed by {site}'s identity key") from None
    c: dict[str, Any] = tok.claims
    t = time.time() if now is None else now
    problems = [
        tok.header.get("typ") != TYP and "typ",
        c.get("sub") != site and "sub",
        c.get("aud") != audience and "aud",
        c.get("htm") != method and "htm",
        c.get("htu") != path and "htu",
        not hmac.compare_digest(str(c.get("bh", "")).encode(), body_hash(body).encode()) and "bh",
        not isinstance(c.get("exp"), int) and "exp",
        not isinstance(c.get("iat"), int) and "iat",
    ]
    bad = [p for p in problems if p]
    if bad:
        raise BadSiteAssertion(f"the site assertion does not fit this request ({', '.join(bad)})")
    if c["exp"] + LEEWAY_S < t or c["iat"] - LEEWAY_S > t or c["exp"] - c["iat"] > LIFETIME_S:
        raise BadSiteAssertion("the site assertion is expired or not yet valid")
    return site


class SiteCaller:
    """POSTs JSON to another site's gateway as this site."""

    def __init__(self, site: str, key: Ed25519PrivateKey, *, timeout: float = TIMEOUT_S) -> None:
        self.site, self._key = site, key
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def post(self, url: str, audience: str, path: str, body: bytes) -> tuple[int, Any]:
        """(status, JSON answer); unreachable or a non-JSON answer: DependencyUnavailable."""
        token = assertion(self.site, self._key, audience, "POST", path, body)
        try:
            r = self._http.post(
                url.rstrip("/") + path,
                content=body,
                headers={
                    "Authorization": f"{SCHEME} {token}",
                    "Content-Type": "application/json",
                },
            )
        except httpx.HTTPError as exc:
            raise DependencyUnavailable(f"site {audience} at {url} is unreachable") from exc
        if r.status_code == 404 and "json" not in r.headers.get("content-type", ""):
            raise NotFound(f"site {audience} has no {path}")
        try:
            return r.status_code, r.json()
        except ValueError:
            raise DependencyUnavailable(
                f"site {audience} answered {r.status_code} without JSON"
            ) from None

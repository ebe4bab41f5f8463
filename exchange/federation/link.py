"""The authenticated site link: this site's gateway calling an owner site's gateway.

Authentication is OAuth2 ``private_key_jwt`` (RFC 7523) with the *site identity* key: at the
owner, each remote department that reads a shared topic is a department with a client whose
registered JWK is our site's public key (``exchange federation identity --jwk``), holding the
roles ``subscriber`` and ``registry:read``. We sign a one-minute client assertion (EdDSA,
``aud`` = the owner's issuer), get an access token, and call the owner's routes with it. The
owner's ordinary machinery then applies: its agreements for that department, its audit log,
its rate limits.

Every failure to reach or be answered by the owner is :class:`DependencyUnavailable`: the
caller fails closed (withholds sealed fields). In production the link runs over TLS (https
site URLs); data keys are then protected in transit by it (and never written to disk here).
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jwt
from joserfc.jwk import OKPKey

from exchange.errors import DependencyUnavailable, Forbidden, NotFound
from exchange.federation.sites import Federation

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TIMEOUT_S = 2.0


def public_jwk(key: Ed25519PrivateKey) -> dict[str, Any]:
    """The site identity's public half as an OKP JWK (what the owner registers)."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    jwk = OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": x})
    jwk.ensure_kid()
    out: dict[str, Any] = jwk.as_dict(private=False)
    return out


def _private_jwk(key: Ed25519PrivateKey) -> OKPKey:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    jwk = OKPKey.import_key(pem)
    jwk.ensure_kid()
    return jwk


@dataclass
class _Token:
    value: str
    expires: float


class SiteLink:
    """Calls to one owner site's gateway as one client of it (one remote department)."""

    def __init__(
        self, url: str, client_id: str, key: Ed25519PrivateKey, *, timeout: float = TIMEOUT_S
    ) -> None:
        self.url = url.rstrip("/")
        self.client_id = client_id
        self._key = _private_jwk(key)
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self._token: _Token | None = None
        self._issuer: str | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise DependencyUnavailable(f"owner site {self.url} is unreachable") from exc

    def _assertion(self, audience: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_urlsafe(16),
        }
        header = {"alg": "EdDSA", "kid": self._key.kid}
        return jwt.encode(header, claims, self._key, algorithms=["EdDSA"])

    def token(self) -> str:
        with self._lock:
            if self._token is not None and self._token.expires > time.monotonic() + 10:
                return self._token.value
        if self._issuer is None:
            r = self._send("GET", "/.well-known/oauth-authorization-server")
            if r.status_code != 200:
                raise DependencyUnavailable(f"owner site {self.url} answered {r.status_code}")
            self._issuer = str(r.json()["issuer"])
        r = self._send(
            "POST",
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self._assertion(self._issuer),
            },
        )
        if r.status_code != 200:
            raise DependencyUnavailable(f"owner site {self.url} refused our site identity")
        body = r.json()
        tok = _Token(str(body["access_token"]), time.monotonic() + float(body["expires_in"]))
        with self._lock:
            self._token = tok
        return tok.value

    def call(self, method: str, path: str, **kw: Any) -> Any:
        r = self._send(method, path, headers={"Authorization": f"Bearer {self.token()}"}, **kw)
        if r.status_code == 404:
            raise NotFound(f"the owner site has no {path}")
        if not 200 <= r.status_code < 300:
            raise DependencyUnavailable(f"owner site answered {r.status_code} on {path}")
        return r.json()

    def release(self, topic: str, keys: list[tuple[str, int]]) -> dict[str, Any]:
        """Ask the owner for the data keys of ``keys`` (dek id, version) of ``topic``."""
        body = {"topic": topic, "keys": [{"dek_id": d, "version": v} for d, v in keys]}
        out: dict[str, Any] = self.call("POST", "/v1/federation/keys", json=body)
        return out

    def schema(self, schema_id: int) -> str:
        """The owner registry's schema text of ``schema_id`` (ids differ between sites)."""
        return str(self.call("GET", f"/registry/schemas/ids/{schema_id}")["schema"])


class SiteLinks:
    """One :class:`SiteLink` per (our department, owner site), made on first use from the
    department's link (``exchange federation link``); Forbidden for an unlinked department."""

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self._links: dict[tuple[str, str], SiteLink] = {}
        self._lock = threading.Lock()

    def __call__(self, department: str, site: str) -> SiteLink:
        with self._lock:
            hit = self._links.get((department, site))
        if hit is not None:
            return hit
        client_id = self.fed.linked_client(department, site)
        if client_id is None:
            raise Forbidden(f"department {department} has no link to site {site}")
        link = SiteLink(self.fed.site(site).url, client_id, self.fed.private_key())
        with self._lock:
            return self._links.setdefault((department, site), link)

    def close(self) -> None:
        with self._lock:
            links, self._links = list(self._links.values()), {}
        for link in links:
            link.close()

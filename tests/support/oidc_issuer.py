"""A tiny OIDC issuer for tests: discovery document + JWKS over real HTTP, RS256 signing.

It stands in for Keycloak where a real one will not do (tests/support/keycloak.py runs the real
one): tokens Keycloak never signs (alg=none, forged, weak or EC/OKP keys) and fast unit-level
checks. The shapes follow Keycloak's: ``realm_access.roles``, ``azp``, a ``typ`` claim, user
attributes mapped to a ``dept`` claim, an encryption key listed next to the signing keys.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from exchange.kafka.broker import free_port


class OidcIssuer:
    def __init__(self, audience: str = "exchange-api", realm: str = "gov") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/realms/{realm}"
        self.audience = audience
        self.keys: list[Key] = []
        self.current: Key = self.add_key(RSAKey.generate_key(2048, private=True))
        # Keycloak also publishes an RSA-OAEP encryption key: verifiers must ignore it.
        self._enc = RSAKey.generate_key(
            2048, parameters={"kid": "enc-1", "use": "enc", "alg": "RSA-OAEP"}, private=True
        )
        self.jwks_fetches = 0
        self.discovery_fetches = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> OidcIssuer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> OidcIssuer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- keys ----------------------------------------------------------------------------
    def add_key(self, key: Key) -> Key:
        key.ensure_kid()
        self.keys.append(key)
        return key

    def rotate(self) -> Key:
        """Publish a new RSA key and sign with it from now on (old keys stay published)."""
        self.current = self.add_key(RSAKey.generate_key(2048, private=True))
        return self.current

    def jwks(self) -> dict[str, Any]:
        keys = [{**k.as_dict(private=False), "use": "sig", "alg": _alg(k)} for k in self.keys] + [
            {**self._enc.as_dict(private=False)}
        ]
        return {"keys": keys}

    # -- tokens --------------------------------------------------------------------------
    def claims(
        self, dept: str | list[str] | None, roles: list[str], **overrides: Any
    ) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": [self.audience, "account"],
            "sub": secrets.token_hex(8),
            "azp": "dept-portal",
            "typ": "Bearer",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": secrets.token_urlsafe(12),
            "scope": "openid profile email",
            "realm_access": {"roles": [*roles, "offline_access", "uma_authorization"]},
        }
        if dept is not None:
            claims["dept"] = dept
        return {**claims, **overrides}

    def sign(
        self, claims: dict[str, Any], key: Key | None = None, header: dict[str, Any] | None = None
    ) -> str:
        key = key or self.current
        h = {"alg": _alg(key), "kid": key.kid, "typ": "JWT", **(header or {})}
        return jwt.encode(h, claims, key, algorithms=[h["alg"]])

    def token(self, dept: str | None, roles: list[str], **overrides: Any) -> str:
        return self.sign(self.claims(dept, roles, **overrides))

    # -- HTTP ----------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.removeprefix(f"/realms/{issuer.url.rsplit('/', 1)[-1]}")
                if path == "/.well-known/openid-configuration":
                    issuer.discovery_fetches += 1
                    body: dict[str, Any] = {
                        "issuer": issuer.url,
                        "jwks_uri": f"{issuer.url}/protocol/openid-connect/certs",
                        "token_endpoint": f"{issuer.url}/protocol/openid-connect/token",
                        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
                    }
                elif path == "/protocol/openid-connect/certs":
                    issuer.jwks_fetches += 1
                    body = issuer.jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        return Handler


def _alg(key: Key) -> str:
    if isinstance(key, RSAKey):
        return "RS256"
    if isinstance(key, ECKey):
        return "ES256"
    if isinstance(key, OKPKey):
        return "EdDSA"
    raise ValueError(f"unsupported key {key.key_type}")

"""Authorization codes with PKCE (RFC 6749 §4.1, RFC 7636, S256 only) for first-party public
clients: the console (and the Swagger UI at ``/docs``) served by this gateway.

A code is 32 random bytes, stored hashed, valid for one minute and redeemable once, only by
the same client, with the same redirect URI and the verifier whose S256 hash was committed
to when the code was asked for.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from exchange.db import transaction
from exchange.errors import ExchangeError
from exchange.identity.models import AuthCodeRow

CODE_TTL_S = 60
# First-party public clients and the paths (on this gateway's origin) they may redirect to.
PUBLIC_CLIENTS: dict[str, frozenset[str]] = {
    "console": frozenset({"/console/callback", "/docs/oauth2-redirect"}),
}
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")


class InvalidGrant(ExchangeError):
    code = "invalid_grant"


@dataclass(frozen=True)
class Redeemed:
    login: str
    scope: str


def valid_verifier(verifier: str) -> bool:
    return bool(_VERIFIER.match(verifier))


def valid_challenge(challenge: str, method: str) -> bool:
    return method == "S256" and bool(_CHALLENGE.match(challenge))


def challenge_for(verifier: str) -> str:
    return str(create_s256_code_challenge(verifier))


def new_verifier() -> str:
    return secrets.token_urlsafe(48)


def redirect_allowed(client_id: str, path: str) -> bool:
    return path in PUBLIC_CLIENTS.get(client_id, frozenset())


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class AuthCodes:
    def __init__(
        self, sessions: sessionmaker[Session], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.sessions = sessions
        self._clock = clock

    def issue(
        self, *, client_id: str, redirect_uri: str, challenge: str, login: str, scope: str
    ) -> str:
        code = secrets.token_urlsafe(32)
        now = int(self._clock())
        with transaction(self.sessions) as s:
            s.execute(delete(AuthCodeRow).where(AuthCodeRow.expires_at < now))
            s.add(
                AuthCodeRow(
                    code_hash=_hash(code),
                    client_id=client_id,
                    redirect_uri=redirect_uri,
                    challenge=challenge,
                    login=login,
                    scope=scope,
                    expires_at=now + CODE_TTL_S,
                )
            )
        return code

    def redeem(self, code: str, *, client_id: str, redirect_uri: str, verifier: str) -> Redeemed:
        """Consume the code; any mismatch consumes it too (RFC 6749 §4.1.2: use once)."""
        if not valid_verifier(verifier) or len(code) > 128:
            raise InvalidGrant("malformed code or code_verifier")
        with transaction(self.sessions) as s:
            row = s.get(AuthCodeRow, _hash(code), with_for_update=True)
            if row is None:
                raise InvalidGrant("unknown, used or expired code")
            s.delete(row)
            ok = (
                row.expires_at > self._clock()
                and row.client_id == client_id
                and row.redirect_uri == redirect_uri
                and hmac.compare_digest(row.challenge, challenge_for(verifier))
            )
            redeemed = Redeemed(row.login, row.scope)
        if not ok:  # raised after the commit: the code is gone either way
            raise InvalidGrant("code does not match the client, redirect URI or verifier")
        return redeemed

"""``private_key_jwt`` client authentication (RFC 7523 §2.2, OIDC Core §9).

A client registers a public JWK; at the token endpoint it proves possession of the private
key with a short-lived signed assertion: ``iss`` = ``sub`` = its client id, ``aud`` = our
token endpoint (or issuer), ``exp`` within :data:`MAX_LIFETIME_S`, and a ``jti`` used once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key, import_key
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from exchange.db import transaction
from exchange.errors import DependencyUnavailable, InvalidInput
from exchange.identity.external import MIN_RSA_BITS, expected_alg, rsa_bits, unverified_parts
from exchange.identity.models import ClientKeyRow, ClientRow, UsedAssertionRow
from exchange.identity.service import Client, client_of, managed_row
from exchange.identity.tokens import InvalidToken

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_LIFETIME_S = 300  # bounds how long a jti must be remembered
LEEWAY_S = 30


def public_signing_key(jwk: Mapping[str, Any]) -> Key:
    """Validate a JWK a client registers: public, RSA >= 2048 / P-256 / Ed25519."""
    if "d" in jwk or any(k in jwk for k in ("p", "q", "k")):
        raise InvalidInput("register the public key only")
    if jwk.get("kty") == "RSA" and rsa_bits(jwk.get("n")) < MIN_RSA_BITS:
        raise InvalidInput(f"RSA keys must have at least {MIN_RSA_BITS} bits")
    try:
        key = import_key(dict(jwk))
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidInput("not a valid JWK") from exc
    if expected_alg(key) is None:
        raise InvalidInput("key type must be RSA, EC P-256 or OKP Ed25519")
    return key


class ClientAssertions:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def register_key(
        self,
        client_id: str,
        jwk: Mapping[str, Any],
        *,
        by: Iterable[str],
        department: str | None = None,
    ) -> dict[str, Any]:
        """Set (or replace) the client's public key; returns the stored public JWK.

        A key is a credential: only the client's manager (see ``roles.manager_role``) sets it.
        """
        public = dict(public_signing_key(jwk).as_dict(private=False))
        with transaction(self.sessions) as s:
            managed_row(s, client_id, by, department)
            row = s.get(ClientKeyRow, client_id)
            now = datetime.now(UTC)
            if row is None:
                s.add(ClientKeyRow(client_id=client_id, public_jwk=public, added_at=now))
            else:
                row.public_jwk, row.added_at = public, now
        return public

    def authenticate(self, assertion: str, audiences: set[str]) -> Client:
        """The enabled client that signed ``assertion``; InvalidToken otherwise."""
        header, unverified = unverified_parts(assertion)
        client_id = unverified.get("sub")
        if not isinstance(client_id, str) or unverified.get("iss") != client_id:
            raise InvalidToken("assertion iss and sub must both be the client id")
        with transaction(self.sessions) as s:
            key_row, client_row = s.get(ClientKeyRow, client_id), s.get(ClientRow, client_id)
            if key_row is None or client_row is None or client_row.disabled:
                raise InvalidToken("client cannot use private_key_jwt")
            key, client = import_key(dict(key_row.public_jwk)), client_of(client_row)
        claims = self._verify(assertion, key, header.get("alg"), client_id, audiences)
        self._use_once(client_id, str(claims["jti"]), int(claims["exp"]))
        return client

    def _verify(
        self, assertion: str, key: Key, alg: Any, client_id: str, audiences: set[str]
    ) -> dict[str, Any]:
        if alg != expected_alg(key):
            raise InvalidToken("assertion algorithm does not match the registered key")
        try:
            claims = jwt.decode(assertion, key, algorithms=[alg]).claims
            if len(str(claims.get("jti", ""))) > 200:
                raise InvalidToken("client assertion jti is too long")
            jwt.JWTClaimsRegistry(
                leeway=LEEWAY_S,
                iss={"essential": True, "value": client_id},
                sub={"essential": True, "value": client_id},
                aud={"essential": True, "values": sorted(audiences)},
                exp={"essential": True},
                jti={"essential": True},
            ).validate(claims)
        except (JoseError, ValueError) as exc:
            raise InvalidToken("client assertion is invalid") from exc
        if int(claims["exp"]) > time.time() + MAX_LIFETIME_S + LEEWAY_S:
            raise InvalidToken("client assertion lives too long")
        return claims

    def _use_once(self, client_id: str, jti: str, exp: int) -> None:
        try:
            with transaction(self.sessions) as s:
                s.execute(delete(UsedAssertionRow).where(UsedAssertionRow.expires_at < time.time()))
                if s.get(UsedAssertionRow, (client_id, jti)) is not None:
                    raise InvalidToken("client assertion was already used")
                s.add(UsedAssertionRow(client_id=client_id, jti=jti, expires_at=exp))
        except DependencyUnavailable as exc:
            # Two concurrent uses of one jti: the loser hits the primary key.
            if isinstance(exc.__cause__, IntegrityError):
                raise InvalidToken("client assertion was already used") from exc
            raise

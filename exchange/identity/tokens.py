"""RFC 9068 JWT access tokens: signing keys (ES256) with rotation, issuing, verifying.

Verification is strict: signature against a known ``kid``, an allow-list of asymmetric
algorithms (never ``none``, never HS*), ``iss``, ``aud``, ``exp``, ``nbf`` and ``typ``.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from sqlalchemy import bindparam, delete, exists, select
from sqlalchemy.orm import Session, sessionmaker

from exchange import metrics
from exchange.db import FirstRow, transaction
from exchange.errors import DependencyUnavailable, ExchangeError
from exchange.identity.models import ClientRow, PersonRow, RevokedTokenRow, SigningKeyRow
from exchange.identity.service import Client
from exchange.secrets_store import seal, unseal

ALGORITHMS = ["ES256"]
TOKEN_FORMAT = 1  # our claim "ver": bump when the claim set changes meaning
LEEWAY_S = 30
# Other gateway instances may rotate: each reloads the active and public keys this often.
KEY_RELOAD_S = 5
SIGNED_CACHE = 10_000  # tokens whose verified signature is remembered (see _signed_claims)


# One prebuilt statement per request (on every authenticated call): ~5x cheaper than ORM gets.
_LIVE = FirstRow(
    select(
        ClientRow.disabled,
        exists().where(RevokedTokenRow.jti == bindparam("jti")).label("revoked"),
    ).where(ClientRow.client_id == bindparam("client_id"))
)


_PERSON_LIVE = FirstRow(
    select(
        PersonRow.disabled,
        PersonRow.password_changed_at,
        exists().where(RevokedTokenRow.jti == bindparam("jti")).label("revoked"),
    ).where(PersonRow.login == bindparam("login"))
)
PERSON_PREFIX = "person:"  # a person's principal id (client ids never contain ':')


class InvalidToken(ExchangeError):
    code = "invalid_token"


@dataclass(frozen=True)
class Principal:
    """Who is calling: established only from a verified token."""

    client_id: str
    department: str
    roles: frozenset[str]
    token_id: str
    issuer: str
    expires_at: int
    external: bool = False
    subject: str = ""  # external tokens: the user or service account (our tokens: the client)

    def has(self, role: str) -> bool:
        return role in self.roles


@dataclass
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    claims: dict[str, Any] = field(default_factory=dict)


class TokenService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        master_key: bytes,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int = 300,
        leeway_seconds: int = LEEWAY_S,
        key_reload_seconds: float = KEY_RELOAD_S,
    ) -> None:
        self.sessions = sessions
        self.master_key = master_key
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl_seconds
        self.leeway = leeway_seconds
        self.key_reload = key_reload_seconds
        self._lock = threading.Lock()
        self._signing: tuple[str, ECKey] | None = None
        self._signing_loaded = 0.0
        self._public: KeySet | None = None
        self._public_loaded = 0.0
        self._revoked_cache: dict[str, float] = {}
        # Tokens whose signature verified, by SHA-256 of the token: see _signed_claims.
        self._signed: dict[bytes, tuple[KeySet, dict[str, Any]]] = {}
        # Built once (it holds no state; "now" is read at each validation), not per request.
        self._claims = jwt.JWTClaimsRegistry(
            now=None,
            leeway=self.leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            jti={"essential": True},
            sub={"essential": True},
            client_id={"essential": True},
            dept={"essential": True},
        )

    # -- keys ----------------------------------------------------------------------------
    def ensure_signing_key(self) -> str:
        with transaction(self.sessions) as s:
            active = s.scalars(
                select(SigningKeyRow).where(SigningKeyRow.status == "active")
            ).first()
            if active is not None:
                return active.kid
        return self.rotate_signing_key()

    def rotate_signing_key(self) -> str:
        """New active key; the old one keeps verifying until its last token has expired."""
        kid = f"es256-{secrets.token_hex(8)}"
        key = ECKey.generate_key(
            "P-256", parameters={"kid": kid, "use": "sig", "alg": "ES256"}, private=True
        )
        now = datetime.now(UTC)
        with transaction(self.sessions) as s:
            for old in s.scalars(select(SigningKeyRow).where(SigningKeyRow.status == "active")):
                old.status = "retired"
                # Instances still signing with it until their next reload: KEY_RELOAD_S more.
                old.retire_after = now + timedelta(seconds=self.ttl + self.leeway + self.key_reload)
            s.add(
                SigningKeyRow(
                    kid=kid,
                    alg="ES256",
                    sealed_private=seal(
                        self.master_key, key.as_pem(private=True), f"jwt-key:{kid}"
                    ),
                    public_jwk=dict(key.as_dict(private=False)),
                    created_at=now,
                    status="active",
                )
            )
        with self._lock:
            self._signing = None
            self._public = None
        return kid

    def _signing_key(self) -> tuple[str, ECKey]:
        with self._lock:
            fresh = time.monotonic() - self._signing_loaded <= self.key_reload
            if self._signing is None or not fresh:
                self._signing = self._load_active(self._signing)
                self._signing_loaded = time.monotonic()
            return self._signing

    def _load_active(self, cached: tuple[str, ECKey] | None) -> tuple[str, ECKey]:
        with transaction(self.sessions) as s:
            row = s.scalars(
                select(SigningKeyRow)
                .where(SigningKeyRow.status == "active")
                .order_by(SigningKeyRow.created_at.desc())
            ).first()
            if row is None:
                raise DependencyUnavailable("no active signing key")
            if cached is not None and cached[0] == row.kid:
                return cached
            pem = unseal(self.master_key, row.sealed_private, f"jwt-key:{row.kid}")
            return row.kid, ECKey.import_key(pem, {"kid": row.kid})

    def jwks(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        with transaction(self.sessions) as s:
            rows = s.scalars(select(SigningKeyRow).order_by(SigningKeyRow.created_at.desc()))
            keys = [
                r.public_jwk
                for r in rows
                if r.status == "active" or (r.retire_after and _aware(r.retire_after) > now)
            ]
        return {"keys": keys}

    def _public_keys(self) -> KeySet:
        with self._lock:
            if self._public is None or time.monotonic() - self._public_loaded > self.key_reload:
                self._public = KeySet.import_key_set(self.jwks())  # type: ignore[arg-type]
                self._public_loaded = time.monotonic()
            return self._public

    # -- tokens --------------------------------------------------------------------------
    def issue(self, client: Client, scope: list[str] | None) -> IssuedToken:
        granted = sorted(set(client.roles) if not scope else set(scope) & set(client.roles))
        return self._issue(client.client_id, client.client_id, client.department, granted, {})

    def issue_person(
        self, login: str, department: str, roles: list[str], client_id: str
    ) -> IssuedToken:
        """A token for a signed-in person, obtained through the public client ``client_id``."""
        extra = {"person": True}
        return self._issue(login, client_id, department, sorted(roles), extra)

    def _issue(
        self, sub: str, client_id: str, dept: str, granted: list[str], extra: dict[str, Any]
    ) -> IssuedToken:
        kid, key = self._signing_key()
        now = int(time.time())
        claims: dict[str, Any] = {
            **extra,
            "iss": self.issuer,
            "sub": sub,
            "aud": self.audience,
            "client_id": client_id,
            "dept": dept,
            "scope": " ".join(granted),
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl,
            "jti": secrets.token_urlsafe(16),
            "ver": TOKEN_FORMAT,
        }
        token = jwt.encode({"alg": "ES256", "kid": kid, "typ": "at+jwt"}, claims, key)
        metrics.TOKENS_ISSUED.inc()
        return IssuedToken(token, self.ttl, claims["scope"], claims)

    def verify(self, token: str) -> Principal:
        try:
            return self._verify(token)
        except InvalidToken:
            metrics.TOKEN_REFUSALS.labels("invalid_token").inc()
            raise

    def _verify(self, token: str) -> Principal:
        claims = self._signed_claims(token)
        try:
            self._claims.validate(claims)
        except JoseError as exc:
            raise InvalidToken(f"token rejected: {exc.error}") from exc
        person = claims.get("person") is True
        if person:
            issued = int(claims.get("iat", 0))
            self._check_person_live(str(claims["jti"]), str(claims["sub"]), issued)
        else:
            self._check_live(str(claims["jti"]), str(claims.get("client_id", "")))
        return Principal(
            client_id=PERSON_PREFIX + str(claims["sub"]) if person else str(claims["client_id"]),
            department=str(claims["dept"]),
            roles=frozenset(str(claims.get("scope", "")).split()),
            token_id=str(claims["jti"]),
            issuer=self.issuer,
            expires_at=int(claims["exp"]),
            subject=str(claims["sub"]) if person else "",
        )

    def _signed_claims(self, token: str) -> dict[str, Any]:
        """The claims of a token whose signature and type check out against the current key
        set. The signature check (ECDSA, most of a request's token cost) is remembered per
        exact token, by its SHA-256, until the key set is next reloaded (``key_reload``
        seconds), so a retired key stops verifying as before; everything that can change
        (expiry, not-before, revocation, a disabled client or person) is checked by the
        caller on every request. Failures are never remembered."""
        keys = self._public_keys()
        digest = hashlib.sha256(token.encode()).digest()
        hit = self._signed.get(digest)
        if hit is not None and hit[0] is keys:
            return hit[1]
        try:
            decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
        except (JoseError, ValueError) as exc:
            raise InvalidToken("token signature or format is invalid") from exc
        header, claims = decoded.header, decoded.claims
        if header.get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
            raise InvalidToken("not an access token")
        if len(self._signed) >= SIGNED_CACHE:
            self._signed.clear()  # bounded; a token not seen since is verified afresh
        self._signed[digest] = (keys, claims)
        return claims

    def revoke(self, token: str) -> None:
        """RFC 7009: revoke a token we issued; unknown or invalid tokens are ignored."""
        try:
            principal = self.verify(token)
        except InvalidToken:
            return
        with transaction(self.sessions) as s:
            if s.get(RevokedTokenRow, principal.token_id) is None:
                s.add(RevokedTokenRow(jti=principal.token_id, expires_at=principal.expires_at))
            s.execute(delete(RevokedTokenRow).where(RevokedTokenRow.expires_at < time.time()))
        with self._lock:
            self._revoked_cache[principal.token_id] = time.monotonic()

    def _check_live(self, jti: str, client_id: str) -> None:
        """Revoked tokens and tokens of disabled (or removed) clients stop working at once."""
        row = _LIVE.first(self.sessions, {"jti": jti, "client_id": client_id})
        if row is None or row.disabled:
            raise InvalidToken("the token's client is disabled")
        if row.revoked:
            raise InvalidToken("token has been revoked")

    def _check_person_live(self, jti: str, login: str, issued_at: int) -> None:
        """Tokens of disabled people, and those issued before the password last changed
        (to the second), stop working at once."""
        row = _PERSON_LIVE.first(self.sessions, {"jti": jti, "login": login})
        if row is None or row.disabled:
            raise InvalidToken("the token's person is disabled")
        if row.password_changed_at is not None and issued_at < row.password_changed_at:
            raise InvalidToken("the token predates the person's password change")
        if row.revoked:
            raise InvalidToken("token has been revoked")

    def is_revoked(self, jti: str) -> bool:
        with transaction(self.sessions) as s:
            return s.get(RevokedTokenRow, jti) is not None

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 response body."""
        try:
            p = self.verify(token)
        except InvalidToken:
            return {"active": False}
        return {
            "active": True,
            "client_id": p.client_id,
            "sub": p.client_id,
            "scope": " ".join(sorted(p.roles)),
            "dept": p.department,
            "exp": p.expires_at,
            "iss": p.issuer,
            "aud": self.audience,
            "token_type": "Bearer",
            "jti": p.token_id,
        }


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)

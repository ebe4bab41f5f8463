"""Tables of departments, OAuth clients, token-signing keys and revoked tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from exchange.db import Base, UtcDateTime


class DepartmentRow(Base):
    __tablename__ = "departments"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    parent: Mapped[str | None] = mapped_column(ForeignKey("departments.id"), nullable=True)
    level: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ClientRow(Base):
    __tablename__ = "clients"
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    department_id: Mapped[str] = mapped_column(ForeignKey("departments.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(String(300))
    roles: Mapped[list[str]] = mapped_column(JSON)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    secret_rotated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SigningKeyRow(Base):
    __tablename__ = "signing_keys"
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    sealed_private: Mapped[bytes] = mapped_column(LargeBinary)
    public_jwk: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Active key signs; retired keys stay in the JWKS until their tokens have expired.
    status: Mapped[str] = mapped_column(String(16))
    retire_after: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class RevokedTokenRow(Base):
    __tablename__ = "revoked_tokens"
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(Integer)


class ClientKeyRow(Base):
    """A client's public JWK for ``private_key_jwt`` authentication (RFC 7523)."""

    __tablename__ = "client_keys"
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"), primary_key=True)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    added_at: Mapped[datetime] = mapped_column(UtcDateTime())


class UsedAssertionRow(Base):
    """``jti`` of client assertions already used, kept until they expire (replay guard)."""

    __tablename__ = "used_client_assertions"
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires_at: Mapped[int] = mapped_column(Integer, index=True)


class PersonRow(Base):
    """A person of a department who signs in to the console (not a machine client)."""

    __tablename__ = "people"
    login: Mapped[str] = mapped_column(String(64), primary_key=True)
    department_id: Mapped[str] = mapped_column(ForeignKey("departments.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(300))
    roles: Mapped[list[str]] = mapped_column(JSON)
    # The TOTP secret sealed with the master key; pending until the first code confirms it.
    totp_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    totp_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_last_step: Mapped[int] = mapped_column(Integer, default=0)  # replay guard
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Epoch second of the last password change: access tokens issued before it stop working.
    password_changed_at: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ConsoleSessionRow(Base):
    """A signed-in browser. Only the hash of the cookie value is stored."""

    __tablename__ = "console_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    login: Mapped[str] = mapped_column(String(200), index=True)  # person, or oidc subject
    principal_id: Mapped[str] = mapped_column(String(200))
    department: Mapped[str] = mapped_column(String(64))
    roles: Mapped[list[str]] = mapped_column(JSON)
    issuer: Mapped[str] = mapped_column(String(300))
    external: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(Integer)
    last_seen: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[int] = mapped_column(Integer, index=True)  # absolute limit


class AuthCodeRow(Base):
    """An authorization code (RFC 6749 §4.1) awaiting redemption with its PKCE verifier."""

    __tablename__ = "auth_codes"
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    redirect_uri: Mapped[str] = mapped_column(String(500))
    challenge: Mapped[str] = mapped_column(String(128))
    login: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(500))
    expires_at: Mapped[int] = mapped_column(Integer, index=True)

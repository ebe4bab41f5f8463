"""Departments and OAuth clients: create, list, rotate, disable, authenticate."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from exchange.db import transaction
from exchange.errors import Conflict, Forbidden, InvalidInput, NotFound
from exchange.identity.models import ClientRow, DepartmentRow
from exchange.identity.roles import ALL_ROLES, check_roles, manager_role, may_manage
from exchange.identity.secrets_hash import DUMMY_HASH, hash_secret, verify_secret

LEVELS = ("region", "city", "county", "township")
# Initialisation (``exchange up``) acts as every manager at once; routes pass the caller's roles.
SYSTEM = ALL_ROLES
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


@dataclass(frozen=True)
class Department:
    id: str
    name: str
    parent: str | None
    level: str


@dataclass(frozen=True)
class Client:
    client_id: str
    department: str
    name: str
    roles: tuple[str, ...]
    disabled: bool


@dataclass(frozen=True)
class IssuedSecret:
    client: Client
    client_secret: str


def _now() -> datetime:
    return datetime.now(UTC)


def _dept(row: DepartmentRow) -> Department:
    return Department(row.id, row.name, row.parent, row.level)


def client_of(row: ClientRow) -> Client:
    return Client(row.client_id, row.department_id, row.name, tuple(row.roles), row.disabled)


class NotYourClient(Forbidden):
    """Separation of duties: the caller's role does not manage clients with these roles."""


def _check_manager(by: Iterable[str], roles: Iterable[str]) -> None:
    if not may_manage(by, roles):
        who = manager_role(roles)
        raise NotYourClient(f"only an {who} manages a client with the roles {sorted(roles)}")


def managed_row(
    s: Session, client_id: str, by: Iterable[str], department: str | None = None
) -> ClientRow:
    """The client's row, locked, if ``by`` may manage it (and it is in ``department``)."""
    row = s.get(ClientRow, client_id, with_for_update=True)
    if row is None or (department is not None and row.department_id != department):
        raise NotFound(f"client {client_id} not found")
    _check_manager(by, row.roles)
    return row


class IdentityService:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    # -- departments ---------------------------------------------------------------------
    def create_department(
        self, id: str, name: str, level: str, parent: str | None = None
    ) -> Department:
        if not _ID.match(id):
            raise InvalidInput("department id must be 2-63 chars of a-z, 0-9 and '-'")
        if level not in LEVELS:
            raise InvalidInput(f"level must be one of {', '.join(LEVELS)}")
        with transaction(self.sessions) as s:
            if s.get(DepartmentRow, id) is not None:
                raise Conflict(f"department {id} already exists")
            if parent is not None:
                p = s.get(DepartmentRow, parent)
                if p is None:
                    raise InvalidInput(f"parent department {parent} does not exist")
                if LEVELS.index(p.level) >= LEVELS.index(level):
                    raise InvalidInput(f"a {level} cannot sit under a {p.level}")
            row = DepartmentRow(id=id, name=name, parent=parent, level=level, created_at=_now())
            s.add(row)
            return _dept(row)

    def get_department(self, id: str) -> Department:
        with transaction(self.sessions) as s:
            row = s.get(DepartmentRow, id)
            if row is None:
                raise NotFound(f"department {id} not found")
            return _dept(row)

    def department_exists(self, id: str) -> bool:
        with transaction(self.sessions) as s:
            return s.get(DepartmentRow, id) is not None

    def departments_with_key(self, okp_x: str) -> set[str]:
        """Departments with an enabled client authenticating with the Ed25519 key whose JWK
        ``x`` is ``okp_x`` (base64url): the departments a remote site acts for here."""
        from exchange.identity.models import ClientKeyRow

        with transaction(self.sessions) as s:
            rows = s.execute(
                select(ClientRow.department_id, ClientKeyRow.public_jwk)
                .join(ClientKeyRow, ClientKeyRow.client_id == ClientRow.client_id)
                .where(ClientRow.disabled.is_(False))
            )
            return {str(d) for d, jwk in rows if isinstance(jwk, dict) and jwk.get("x") == okp_x}

    def list_departments(self) -> list[Department]:
        with transaction(self.sessions) as s:
            return [_dept(r) for r in s.scalars(select(DepartmentRow).order_by(DepartmentRow.id))]

    # -- clients -------------------------------------------------------------------------
    def create_client(
        self,
        department: str,
        name: str,
        roles: list[str],
        client_id: str | None = None,
        *,
        by: Iterable[str],
    ) -> IssuedSecret:
        if problems := check_roles(roles):
            raise InvalidInput("; ".join(problems))
        _check_manager(by, roles)
        secret = secrets.token_urlsafe(32)
        # Fits the 64-char column; never contains ':' (external ids are "oidc:...").
        cid = client_id or f"{department[:50]}-{secrets.token_hex(6)}"
        if not _ID.match(cid):
            raise InvalidInput("client id must be 2-63 chars of a-z, 0-9 and '-'")
        with transaction(self.sessions) as s:
            if s.get(DepartmentRow, department) is None:
                raise NotFound(f"department {department} not found")
            if s.get(ClientRow, cid) is not None:
                raise Conflict(f"client {cid} already exists")
            now = _now()
            row = ClientRow(
                client_id=cid,
                department_id=department,
                name=name,
                secret_hash=hash_secret(secret),
                roles=sorted(set(roles)),
                disabled=False,
                created_at=now,
                secret_rotated_at=now,
            )
            s.add(row)
            return IssuedSecret(client_of(row), secret)

    def list_clients(self, department: str) -> list[Client]:
        with transaction(self.sessions) as s:
            rows = s.scalars(
                select(ClientRow)
                .where(ClientRow.department_id == department)
                .order_by(ClientRow.client_id)
            )
            return [client_of(r) for r in rows]

    def get_client(self, client_id: str) -> Client:
        with transaction(self.sessions) as s:
            row = s.get(ClientRow, client_id)
            if row is None:
                raise NotFound(f"client {client_id} not found")
            return client_of(row)

    def rotate_secret(
        self, client_id: str, *, by: Iterable[str], department: str | None = None
    ) -> IssuedSecret:
        secret = secrets.token_urlsafe(32)
        with transaction(self.sessions) as s:
            row = managed_row(s, client_id, by, department)
            row.secret_hash = hash_secret(secret)
            row.secret_rotated_at = _now()
            return IssuedSecret(client_of(row), secret)

    def set_disabled(
        self, client_id: str, disabled: bool, *, by: Iterable[str], department: str | None = None
    ) -> Client:
        with transaction(self.sessions) as s:
            row = managed_row(s, client_id, by, department)
            row.disabled = disabled
            return client_of(row)

    def set_roles(
        self, client_id: str, roles: list[str], *, by: Iterable[str], department: str | None = None
    ) -> Client:
        """Re-role: the caller must manage the client both as it is and as it will be."""
        if problems := check_roles(roles):
            raise InvalidInput("; ".join(problems))
        _check_manager(by, roles)
        with transaction(self.sessions) as s:
            row = managed_row(s, client_id, by, department)
            row.roles = sorted(set(roles))
            return client_of(row)

    def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The client if the secret matches and it is enabled; None otherwise (no oracle)."""
        with transaction(self.sessions) as s:
            row = s.get(ClientRow, client_id)
            stored = row.secret_hash if row is not None else DUMMY_HASH
            ok = verify_secret(secret, stored)
            if row is None or not ok or row.disabled:
                return None
            return client_of(row)

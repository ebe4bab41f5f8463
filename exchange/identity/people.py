"""People: the department's staff who sign in to the console with a password and, for the
``admin`` and ``auditor`` roles, a TOTP second factor.

People hold the same role names as clients, under the same separation of duties
(:mod:`exchange.identity.roles`): the same checks decide who may create or change whom.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from exchange.db import transaction
from exchange.errors import Conflict, Forbidden, InvalidInput, NotFound
from exchange.identity import totp
from exchange.identity.models import DepartmentRow, PersonRow
from exchange.identity.passwords import (
    DUMMY_HASH,
    WEAKNESSES,
    hash_password,
    password_problems,
    verify_password,
    weaknesses,
)
from exchange.identity.roles import Role, check_roles, manager_role, may_manage
from exchange.secrets_store import seal, unseal

# Principal ids of people: our client ids never contain ':', external ones start "oidc:".
PERSON_PREFIX = "person:"
_LOGIN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
SECOND_FACTOR_ROLES = frozenset({Role.ADMIN.value, Role.AUDITOR.value})


@dataclass(frozen=True)
class Person:
    login: str
    department: str
    name: str
    roles: tuple[str, ...]
    disabled: bool
    totp_enrolled: bool

    @property
    def principal_id(self) -> str:
        return PERSON_PREFIX + self.login

    @property
    def needs_second_factor(self) -> bool:
        return bool(SECOND_FACTOR_ROLES & set(self.roles))


@dataclass(frozen=True)
class Enrolment:
    """A new TOTP secret, shown to its person once."""

    secret_text: str
    uri: str


def person_of(row: PersonRow) -> Person:
    return Person(
        row.login,
        row.department_id,
        row.name,
        tuple(row.roles),
        row.disabled,
        bool(row.totp_sealed and row.totp_confirmed),
    )


class NotYourPerson(Forbidden):
    """Separation of duties: the caller's role does not manage people with these roles."""


class WeakPassword(InvalidInput):
    """The new password breaks the policy: ``weaknesses`` holds the codes of
    :data:`exchange.identity.passwords.WEAKNESSES` (and ``"same"``: unchanged)."""

    code = "weak_password"

    def __init__(self, weaknesses: list[str]) -> None:
        words = {
            **WEAKNESSES,
            "same": "the new password must differ from the current one",
            "mismatch": "the new password and its repetition differ",
        }
        super().__init__("; ".join(words[w] for w in weaknesses))
        self.weaknesses = weaknesses


def check_new_password(login: str, current: str, new: str) -> None:
    """Raise :class:`WeakPassword` unless ``new`` may replace ``current`` (no hashing)."""
    found = weaknesses(new, login) + (["same"] if new == current else [])
    if found:
        raise WeakPassword(found)


class CredentialsRefused(Forbidden):
    """The current password (``reason="bad_password"``) or the TOTP code (``"bad_totp"``)
    did not check out."""

    code = "bad_credentials"

    def __init__(self, reason: str) -> None:
        super().__init__("the current password or the code is wrong")
        self.reason = reason


def _check_manager(by: Iterable[str], roles: Iterable[str]) -> None:
    if not may_manage(by, roles):
        who = manager_role(roles)
        raise NotYourPerson(f"only an {who} manages a person with the roles {sorted(roles)}")


class People:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        master_key: bytes,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self._key = master_key
        self._clock = clock

    def _context(self, login: str) -> str:
        return f"totp:{login}"

    def create(
        self,
        department: str,
        login: str,
        name: str,
        password: str,
        roles: list[str],
        *,
        by: Iterable[str],
    ) -> Person:
        if not _LOGIN.match(login):
            raise InvalidInput("login must be 2-63 chars of a-z, 0-9, '.', '_' and '-'")
        if problems := check_roles(roles) + password_problems(password, login):
            raise InvalidInput("; ".join(problems))
        _check_manager(by, roles)
        hashed = hash_password(password)  # outside the transaction: it takes a while
        with transaction(self.sessions) as s:
            if s.get(DepartmentRow, department) is None:
                raise NotFound(f"department {department} not found")
            if s.get(PersonRow, login) is not None:
                raise Conflict(f"person {login} already exists")
            row = PersonRow(
                login=login,
                department_id=department,
                name=name,
                password_hash=hashed,
                roles=sorted(set(roles)),
                totp_sealed=None,
                totp_confirmed=False,
                totp_last_step=0,
                disabled=False,
                created_at=datetime.now(UTC),
                password_changed_at=None,
            )
            s.add(row)
            return person_of(row)

    def get(self, login: str) -> Person:
        with transaction(self.sessions) as s:
            row = s.get(PersonRow, login)
            if row is None:
                raise NotFound(f"person {login} not found")
            return person_of(row)

    def exists(self, login: str) -> bool:
        with transaction(self.sessions) as s:
            return s.get(PersonRow, login) is not None

    def list(self, department: str | None = None) -> list[Person]:
        q = select(PersonRow).order_by(PersonRow.department_id, PersonRow.login)
        if department is not None:
            q = q.where(PersonRow.department_id == department)
        with transaction(self.sessions) as s:
            return [person_of(r) for r in s.scalars(q)]

    def _managed(self, s: Session, login: str, by: Iterable[str]) -> PersonRow:
        row = s.get(PersonRow, login, with_for_update=True)
        if row is None:
            raise NotFound(f"person {login} not found")
        _check_manager(by, row.roles)
        return row

    def set_disabled(self, login: str, disabled: bool, *, by: Iterable[str]) -> Person:
        with transaction(self.sessions) as s:
            row = self._managed(s, login, by)
            row.disabled = disabled
            return person_of(row)

    def reset_totp(self, login: str, *, by: Iterable[str]) -> Person:
        """The person enrols a new authenticator at the next sign-in."""
        with transaction(self.sessions) as s:
            row = self._managed(s, login, by)
            row.totp_sealed, row.totp_confirmed = None, False
            return person_of(row)

    def authenticate(self, login: str, password: str) -> Person | None:
        """The person if the password matches and they are enabled; None otherwise."""
        with transaction(self.sessions) as s:
            row = s.get(PersonRow, login) if _LOGIN.match(login) else None
            stored = row.password_hash if row is not None else DUMMY_HASH
            ok = verify_password(password, stored)
            if row is None or not ok or row.disabled:
                return None
            return person_of(row)

    def change_password(
        self, login: str, current: str, new: str, totp_code: str | None = None
    ) -> Person:
        """The person replaces their own password: the current one must match and, for the
        roles that sign in with a second factor, a fresh TOTP code too. The new one follows
        the policy of creation and is hashed with the same KDF."""
        check_new_password(login, current, new)
        with transaction(self.sessions) as s:
            row = s.get(PersonRow, login) if _LOGIN.match(login) else None
            stored = row.password_hash if row is not None else DUMMY_HASH
            person = person_of(row) if row is not None else None
        if not verify_password(current, stored) or person is None or person.disabled:
            raise CredentialsRefused("bad_password")
        if person.needs_second_factor and not self.check_totp(login, totp_code or ""):
            raise CredentialsRefused("bad_totp")
        hashed = hash_password(new)  # outside the transaction: it takes a while
        with transaction(self.sessions) as s:
            row = s.get(PersonRow, login, with_for_update=True)
            if row is None or row.password_hash != stored:
                raise Conflict("the password was changed meanwhile")
            row.password_hash = hashed
            row.password_changed_at = int(self._clock())
            return person_of(row)

    # -- second factor --------------------------------------------------------------------
    def begin_enrolment(self, login: str) -> Enrolment:
        """A fresh secret for a person without a confirmed one (replaces a pending one)."""
        secret = totp.new_secret()
        with transaction(self.sessions) as s:
            row = s.get(PersonRow, login, with_for_update=True)
            if row is None:
                raise NotFound(f"person {login} not found")
            if row.totp_sealed and row.totp_confirmed:
                raise Conflict("a second factor is already enrolled")
            row.totp_sealed = seal(self._key, secret, self._context(login))
            row.totp_confirmed = False
        return Enrolment(totp.text(secret), totp.uri(secret, login))

    def check_totp(self, login: str, code: str) -> bool:
        """Accept ``code`` (once): confirms a pending enrolment, or signs in an enrolled one."""
        with transaction(self.sessions) as s:
            row = s.get(PersonRow, login, with_for_update=True)
            if row is None or row.totp_sealed is None or row.disabled:
                return False
            secret = unseal(self._key, row.totp_sealed, self._context(login))
            step = totp.accepted_step(secret, code.strip(), self._clock(), row.totp_last_step)
            if step is None:
                return False
            row.totp_last_step, row.totp_confirmed = step, True
            return True

"""Roles a client can hold; each is also an OAuth scope. Deny by default.

Separation of duties (the security-officer line): the ``auditor`` reads the audit trail and
must never also change what it reviews, so it combines only with read-only roles, and only
auditors grant it. Admins grant every other role and cannot touch an auditor's client.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    AUDITOR = "auditor"
    STEWARD = "steward"
    PUBLISHER = "publisher"
    SUBSCRIBER = "subscriber"
    REGISTRY_READ = "registry:read"
    REGISTRY_WRITE = "registry:write"
    CONSENT_REGISTRAR = "consent_registrar"


ALL_ROLES = frozenset(r.value for r in Role)
# Roles that change nothing. Every other role writes (subscriber creates subscriptions and
# agreement requests), so a new role is a writing role until it is listed here.
READ_ONLY_ROLES = frozenset({Role.AUDITOR.value, Role.REGISTRY_READ.value})
WRITING_ROLES = ALL_ROLES - READ_ONLY_ROLES

INCOMPATIBLE = tuple(frozenset({Role.AUDITOR.value, w}) for w in sorted(WRITING_ROLES))


def check_roles(roles: Iterable[str]) -> list[str]:
    """Return an error message per problem (unknown role, duty conflict); empty = valid."""
    held = set(roles)
    valid = ", ".join(sorted(ALL_ROLES))
    problems = [f"unknown role {r!r} (valid roles: {valid})" for r in sorted(held - ALL_ROLES)]
    problems += [
        f"roles {' and '.join(sorted(pair))} may not be held together"
        for pair in INCOMPATIBLE
        if pair <= held
    ]
    return problems


def manager_role(client_roles: Iterable[str]) -> str:
    """The role that may create, rotate, enable/disable or re-role a client with these roles:
    auditors manage auditor clients, admins every other client."""
    return Role.AUDITOR.value if Role.AUDITOR.value in set(client_roles) else Role.ADMIN.value


def may_manage(actor_roles: Iterable[str], client_roles: Iterable[str]) -> bool:
    return manager_role(client_roles) in set(actor_roles)

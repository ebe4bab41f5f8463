"""Roles a client can hold; each is also an OAuth scope. Deny by default."""

from __future__ import annotations

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

# Separation of duties: whoever administers or grants must not also review the audit trail.
INCOMPATIBLE = (
    frozenset({Role.ADMIN.value, Role.AUDITOR.value}),
    frozenset({Role.STEWARD.value, Role.AUDITOR.value}),
)


def check_roles(roles: list[str] | set[str] | frozenset[str]) -> list[str]:
    """Return an error message per problem (unknown role, duty conflict); empty = valid."""
    problems = [f"unknown role {r!r}" for r in sorted(set(roles) - ALL_ROLES)]
    problems += [
        f"roles {' and '.join(sorted(pair))} may not be held together"
        for pair in INCOMPATIBLE
        if pair <= set(roles)
    ]
    return problems

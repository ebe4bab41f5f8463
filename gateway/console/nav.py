"""The console's navigation: one entry per page, shown to the roles that may open it.

The roles here only decide what the menu shows; the route's own ``console_require`` (the
same role names as its ``@access``) decides what may be opened.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

ANYONE: frozenset[str] = frozenset()  # any signed-in person
_STEWARD = frozenset({"steward"})
_AUDITOR = frozenset({"auditor"})


@dataclass(frozen=True)
class NavItem:
    path: str
    label: str  # message key
    roles: frozenset[str] = ANYONE
    group: str = "nav.group.general"  # message key of the menu section


NAV: list[NavItem] = [
    NavItem("/console", "nav.home"),
    NavItem("/console/account", "nav.account"),
    NavItem("/console/admin/health", "nav.admin.health", frozenset({"admin"}), "nav.group.admin"),
    NavItem(
        "/console/admin/departments",
        "nav.admin.departments",
        frozenset({"admin"}),
        "nav.group.admin",
    ),
    NavItem(
        "/console/admin/people",
        "nav.admin.people",
        frozenset({"admin", "auditor"}),
        "nav.group.admin",
    ),
    NavItem("/console/admin/topics", "nav.admin.topics", frozenset({"admin"}), "nav.group.admin"),
    NavItem("/console/admin/keys", "nav.admin.keys", frozenset({"admin"}), "nav.group.admin"),
    NavItem("/console/steward", "nav.steward.inbox", _STEWARD, "nav.group.steward"),
    NavItem("/console/audit", "nav.audit.events", _AUDITOR, "nav.group.audit"),
    NavItem("/console/audit/subjects", "nav.audit.subjects", _AUDITOR, "nav.group.audit"),
    NavItem("/console/audit/checkpoints", "nav.audit.checkpoints", _AUDITOR, "nav.group.audit"),
    NavItem("/console/audit/activity", "nav.audit.activity", _AUDITOR, "nav.group.audit"),
    NavItem("/console/audit/key", "nav.audit.key", _AUDITOR, "nav.group.audit"),
    NavItem("/console/dev/catalog", "nav.dev.catalog", ANYONE, "nav.group.dev"),
    NavItem(
        "/console/dev/compatibility",
        "nav.dev.compat",
        frozenset({"registry:read", "registry:write"}),
        "nav.group.dev",
    ),
    NavItem("/console/dev/try", "nav.dev.try", frozenset({"publisher"}), "nav.group.dev"),
]


def visible(roles: Collection[str]) -> list[NavItem]:
    return [n for n in NAV if not n.roles or n.roles & set(roles)]

"""``docs/reference.md``, generated from the code: roles, who may call each route, department
levels, field classifications and audit event types.

    python -m gateway.reference > docs/reference.md

``tests/unit/gateway/test_reference_doc.py`` fails when the file differs from what the code
says, so the tables cannot go stale.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from fastapi.routing import APIRoute

from audit.event_types import EVENT_TYPES
from exchange.identity.roles import READ_ONLY_ROLES, Role
from exchange.identity.service import LEVELS
from gateway.access import ANY, CLIENT, OWN, PUBLIC, SITE, Access, app_routes
from gateway.app import ROUTERS
from schemas.classification import Classification
from schemas.sealing_rules import SEALED_CLASSES

ROLE_DUTIES: dict[Role, tuple[str, str]] = {  # what it is for, who grants it
    Role.ADMIN: (
        "runs the exchange: departments, clients and people (not auditors), topics, KEKs, "
        "signing keys, consent-manager designations",
        "admin (the first one: `exchange up`)",
    ),
    Role.AUDITOR: (
        "the security officer: reads the audit log, checkpoints and proofs, agreements and "
        "consents; manages auditor clients and people only",
        "auditor (the first one: `exchange up`)",
    ),
    Role.STEWARD: (
        "speaks for the owning department: approves, narrows, rejects, suspends, revokes its "
        "agreements; creates its topics; rotates and shreds its keys",
        "admin",
    ),
    Role.PUBLISHER: ("publishes records to its department's topics", "admin"),
    Role.SUBSCRIBER: (
        "requests agreements, subscribes, reads granted records (pull, stream, webhook)",
        "admin",
    ),
    Role.REGISTRY_READ: ("reads schemas in the registry", "admin; auditor (to auditors)"),
    Role.REGISTRY_WRITE: (
        "registers, deletes and configures its own department's subjects",
        "admin",
    ),
    Role.CONSENT_REGISTRAR: (
        "records, pauses, resumes, revokes data-subject consents for topics its department "
        "owns or manages by designation",
        "admin",
    ),
}

CLASS_MEANING: dict[Classification, str] = {
    Classification.PUBLIC: "may be published openly",
    Classification.INTERNAL: "for government use; the default for an unclassified field",
    Classification.SENSITIVE: "personal or confidential (also Confluent `confluent:tags: [PII]`)",
    Classification.SECRET: "the highest class: special-category or security data",
}

LEVEL_MEANING = {
    "region": "province or autonomous region",
    "city": "prefecture-level city",
    "county": "county or district",
    "township": "township or street office",
}


def _who(token: str) -> str:
    if token == PUBLIC:
        return "anyone (no token)"
    if token == CLIENT:
        return "a client with its own credentials"
    if token == ANY:
        return "any signed-in client"
    if token == SITE:
        return "another known site (site identity key)"
    if token.startswith(OWN):
        role = token.removeprefix(OWN)
        return "anyone of the owning department" if role == "*" else f"`{role}` of the owner"
    return f"`{token}`"


def routes() -> Iterator[tuple[str, str, Access]]:
    for router in ROUTERS:
        for route in app_routes(list(router.routes)):
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            decl: Access | None = getattr(route.endpoint, "__exchange_access__", None)
            if decl is None:
                continue
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield method, route.path, decl


def _table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def render() -> str:
    all_routes = list(routes())
    lines = [
        "# Reference",
        "",
        "Generated from the code by `python -m gateway.reference > docs/reference.md`;",
        "`tests/unit/gateway/test_reference_doc.py` fails if it is out of date.",
        "",
        "## Roles",
        "",
        "Each role is also an OAuth scope. Deny by default. `auditor` goes with read-only roles",
        "only (`exchange/identity/roles.py`).",
        "",
    ]
    rows = []
    for role in Role:
        duty, granted = ROLE_DUTIES[role]
        n = sum(1 for _, _, a in all_routes if {role.value, OWN + role.value} & a.allowed)
        kind = "read-only" if role.value in READ_ONLY_ROLES else "writes"
        rows.append((f"`{role.value}`", duty, kind, granted, str(n)))
    lines += _table(("role", "what it is for", "kind", "granted by", "routes naming it"), rows)
    lines += [
        "",
        "## Who may call each route",
        "",
        "From each route's `@access(...)` declaration (`gateway/access.py`), which",
        '`tests/e2e/test_authz_matrix.py` enforces. "of the owner": only a holder from the',
        "department owning the addressed topic, agreement, subscription or client; others get",
        "404 where a 403 would reveal that it exists.",
        "",
    ]
    lines += _table(
        ("method", "path", "who may call"),
        [
            (m, f"`{p}`", ", ".join(sorted(_who(t) for t in a.allowed)))
            for m, p, a in sorted(all_routes, key=lambda r: (r[1], r[0]))
        ],
    )
    lines += [
        "",
        "## Department levels",
        "",
        "From highest to lowest; a department's parent must be of a higher level.",
        "",
    ]
    lines += _table(("level", "meaning"), [(f"`{lv}`", LEVEL_MEANING[lv]) for lv in LEVELS])
    lines += [
        "",
        "## Field classifications",
        "",
        'A schema field says `"classification": "<class>"`; `"data_subject": true` marks the',
        "field identifying the person a record is about (hashed in the audit log, used for",
        "consent). Raising a field's class is allowed; lowering it needs the admin role.",
        "",
    ]
    lines += _table(
        ("class", "meaning", "encrypted before Kafka"),
        [
            (f"`{c.value}`", CLASS_MEANING[c], "yes" if c in SEALED_CLASSES else "no")
            for c in Classification
        ],
    )
    lines += ["", "## Audit event types", ""]
    lines += _table(
        ("type", "recorded when"), [(f"`{t}`", d) for t, d in sorted(EVENT_TYPES.items())]
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")

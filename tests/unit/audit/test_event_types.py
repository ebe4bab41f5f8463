"""Every audit event type emitted in code is in the documented table, and nothing stale.

A static scan of the source: string literals shaped ``<prefix>.<name>`` whose prefix is an
event-type prefix are emitted types (file names such as ``audit.db`` are skipped); f-strings
such as ``f"agreement.{verb}"`` must each be covered by documented types of that prefix.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

from audit.event_types import EVENT_TYPES

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("exchange", "schemas", "dataplane", "gateway", "consent", "audit", "cli", "node")
SHAPE = re.compile(r"^[a-z]+\.[a-z_]*[a-z]$")
FILES = re.compile(r"\.(db|key|pub|json|bin|log|xml|toml|properties|partial)$")


def _trees() -> list[ast.AST]:
    return [
        ast.parse(path.read_text(encoding="utf-8"))
        for pkg in PACKAGES
        for path in (ROOT / pkg).rglob("*.py")
        if path.name != "event_types.py" and "migrations" not in path.parts
    ]


def _record_literals(trees: list[ast.AST]) -> set[str]:
    """First arguments of ``AuditRecord("type", ...)``: also finds a prefix the table lacks."""
    out = set()
    for tree in trees:
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "AuditRecord"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                out.add(str(node.args[0].value))
    return out


# Calls whose string arguments look like event types but are not: tracing span names, and the
# ``what`` of an ``audit.read`` event (gateway.routes.audit.record_read).
NOT_TYPES = frozenset({"span", "record_read"})


def _excluded(trees: list[ast.AST]) -> set[int]:
    out: set[int] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", None))
                if name in NOT_TYPES:
                    out.update(id(a) for a in node.args)
    return out


@functools.cache
def _scan() -> tuple[set[str], set[str]]:
    trees = _trees()
    skip = _excluded(trees)
    direct = _record_literals(trees)
    prefixes = {t.split(".")[0] for t in [*EVENT_TYPES, *direct]}
    literals: set[str] = set(direct)
    templates: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                v = node.value
                if SHAPE.match(v) and not FILES.search(v) and v.split(".")[0] in prefixes:
                    literals.add(v)
            elif isinstance(node, ast.JoinedStr) and node.values:
                head = node.values[0]
                if isinstance(head, ast.Constant) and isinstance(head.value, str):
                    v = head.value
                    if re.match(r"^[a-z]+\.[a-z_]*$", v) and v.split(".")[0] in prefixes:
                        templates.add(v)
    return literals, templates


def test_every_emitted_type_is_documented() -> None:
    literals, templates = _scan()
    assert literals - EVENT_TYPES.keys() == set(), "document these in audit/event_types.py"
    for t in templates:
        assert any(k.startswith(t) and k not in literals for k in EVENT_TYPES), t


def test_no_documented_type_is_stale() -> None:
    literals, templates = _scan()
    stale = {t for t in EVENT_TYPES if t not in literals and not any(map(t.startswith, templates))}
    assert stale == set()
    assert {"record.published", "token.issued", "audit.read", "agreement.approved"} <= literals | {
        t for t in EVENT_TYPES if any(map(t.startswith, templates))
    }

"""docs/reference.md is what the code says (regenerate: python -m gateway.reference)."""

from __future__ import annotations

from pathlib import Path

from exchange.identity.roles import ALL_ROLES
from gateway.reference import render, routes

DOC = Path(__file__).resolve().parents[3] / "docs" / "reference.md"


def test_reference_doc_matches_the_code() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/reference.md is stale: python -m gateway.reference > docs/reference.md"
    )


def test_every_role_and_route_is_in_it() -> None:
    text = render()
    assert all(f"| `{role}` |" in text for role in ALL_ROLES)
    paths = {p for _, p, _ in routes()}
    assert {"/v1/topics/{topic}/records", "/v1/audit/events", "/oauth/token"} <= paths
    assert all(f"`{p}`" in text for p in paths)

"""The access-declaration grammar and what it expects of each caller class."""

from __future__ import annotations

import pytest

from gateway.access import ANY, CLIENT, PUBLIC, Access, access


def decl(*allowed: str) -> Access:
    return Access(frozenset(allowed))


def test_public_lets_everybody_through() -> None:
    assert decl(PUBLIC).expect(None, ()) == "allow"
    assert decl(PUBLIC).expect("other", {"publisher"}) == "allow"


def test_anonymous_callers_are_unauthenticated_elsewhere() -> None:
    for d in (decl(ANY), decl(CLIENT), decl("admin"), decl("own:*")):
        assert d.expect(None, ()) == "unauthenticated"


def test_roles_from_any_department_and_from_the_owner_only() -> None:
    d = decl("admin", "own:steward")
    assert d.expect("own", {"steward"}) == "allow"
    assert d.expect("other", {"steward"}) == "deny"
    assert d.expect("other", {"admin"}) == "allow"
    assert d.expect("own", {"publisher"}) == "deny"
    assert d.scoped and not decl("steward").scoped
    assert decl("own:*").expect("own", {"registry:read"}) == "allow"
    assert decl("own:*").expect("other", {"admin"}) == "deny"


@pytest.mark.parametrize("bad", [(), ("root",), ("own:root",), ("*",)])
def test_invalid_declarations_are_refused(bad: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        access(*bad)

"""The pure rule of who may register a data subject's consent (issue 12 item 4)."""

from __future__ import annotations

import pytest

from consent.managers import may_register
from exchange.identity.tokens import Principal


def who(dept: str, *roles: str) -> Principal:
    return Principal(f"{dept}-app", dept, frozenset(roles), "j", "i", 0)


@pytest.mark.parametrize(
    ("caller", "consumer", "managers", "allowed"),
    [
        ("owner", "police", set(), True),
        ("portal", "police", {"portal"}, True),
        ("portal", "police", set(), False),  # not designated
        ("tax", "police", {"portal"}, False),  # someone else entirely
        ("police", "police", set(), False),  # the consumer itself
        ("police", "police", {"police"}, False),  # ... even when designated
        ("owner", "owner", set(), False),  # the owner for its own access
    ],
)
def test_who_may_register(caller: str, consumer: str, managers: set[str], allowed: bool) -> None:
    refused = may_register(who(caller, "consent_registrar"), "owner", consumer, managers)
    assert (refused is None) is allowed


@pytest.mark.parametrize("role", ["admin", "steward", "auditor", "subscriber", "publisher"])
def test_only_registrars(role: str) -> None:
    assert may_register(who("owner", role), "owner", "police", set()) is not None

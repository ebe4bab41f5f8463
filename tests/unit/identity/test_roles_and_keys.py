"""Pure checks: role sets (deny unknown, separation of duties) and client-key registration."""

from __future__ import annotations

import base64

import pytest
from joserfc.jwk import ECKey, OKPKey, RSAKey

from exchange.errors import InvalidInput
from exchange.identity.assertions import public_signing_key
from exchange.identity.external import rsa_bits
from exchange.identity.roles import (
    ALL_ROLES,
    READ_ONLY_ROLES,
    WRITING_ROLES,
    check_roles,
    manager_role,
    may_manage,
)


def test_every_single_role_is_valid() -> None:
    for role in ALL_ROLES:
        assert check_roles([role]) == []


@pytest.mark.parametrize(
    "roles", [["admin", "auditor"], ["steward", "auditor"], ["admin", "steward", "auditor"]]
)
def test_separation_of_duties(roles: list[str]) -> None:
    assert any("may not be held together" in p for p in check_roles(roles))


@pytest.mark.parametrize("role", sorted(WRITING_ROLES))
def test_auditor_combines_with_no_writing_role(role: str) -> None:
    assert check_roles(["auditor", role]) == [
        f"roles {' and '.join(sorted(['auditor', role]))} may not be held together"
    ]


def test_writing_roles_are_every_role_but_the_read_only_ones() -> None:
    # A new role is treated as writing (so not combinable with auditor) until declared otherwise.
    assert ALL_ROLES - {"auditor", "registry:read"} == WRITING_ROLES
    assert {
        "admin",
        "publisher",
        "steward",
        "consent_registrar",
        "registry:write",
        "subscriber",
    } <= WRITING_ROLES
    assert check_roles(["auditor", "registry:read"]) == []
    assert {"auditor", "registry:read"} == READ_ONLY_ROLES


def test_auditors_manage_auditor_clients_and_admins_the_rest() -> None:
    assert manager_role(["auditor"]) == "auditor"
    assert manager_role(["auditor", "registry:read"]) == "auditor"
    for role in sorted(ALL_ROLES - {"auditor"}):
        assert manager_role([role]) == "admin"
        assert may_manage({"admin"}, [role]) and not may_manage({"auditor"}, [role])
    assert not may_manage({"admin", "registry:write"}, ["auditor"])
    assert may_manage({"auditor"}, ["auditor"])
    assert not may_manage({"steward", "publisher"}, ["publisher"])


def test_unknown_roles_are_named() -> None:
    assert check_roles(["publisher", "root"]) == [
        "unknown role 'root' (valid roles: admin, auditor, consent_registrar, publisher, "
        "registry:read, registry:write, steward, subscriber)"
    ]


@pytest.mark.parametrize(
    "key",
    [
        RSAKey.generate_key(2048, private=False),
        ECKey.generate_key("P-256", private=False),
        OKPKey.generate_key("Ed25519", private=False),
    ],
)
def test_public_keys_of_accepted_types_register(key: RSAKey | ECKey | OKPKey) -> None:
    assert public_signing_key(key.as_dict()).key_type == key.key_type


@pytest.mark.parametrize(
    "jwk",
    [
        ECKey.generate_key("P-256", private=True).as_dict(private=True),  # private part
        ECKey.generate_key("P-384", private=False).as_dict(),  # curve we do not pin
        {"kty": "oct", "k": "c2VjcmV0"},  # a shared secret
        {"kty": "RSA", "e": "AQAB", "n": base64.urlsafe_b64encode(b"\x01" * 128).decode()},
        {"kty": "EC", "crv": "P-256", "x": "bad"},
        {},
    ],
    ids=["private", "p384", "oct", "rsa1024", "broken", "empty"],
)
def test_unacceptable_keys_are_invalid_input(jwk: dict[str, str]) -> None:
    with pytest.raises(InvalidInput):
        public_signing_key(jwk)


def test_rsa_bits() -> None:
    n = base64.urlsafe_b64encode((1 << 2047).to_bytes(256, "big")).rstrip(b"=").decode()
    assert rsa_bits(n) == 2048
    assert rsa_bits(None) == 0
    assert rsa_bits("!!") == 0

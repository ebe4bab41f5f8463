"""Site assertions (exchange.federation.sitecall): what the witness route accepts."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from exchange.federation.sitecall import BadSiteAssertion, assertion, verify

KEY = Ed25519PrivateKey.generate()
PATH = "/v1/federation/witness"


def key_of(name: str) -> Ed25519PublicKey | None:
    return KEY.public_key() if name == "region" else None


def check(token: str, body: bytes = b"{}", **kw: object) -> str:
    args: dict[str, object] = {
        "key_of": key_of, "audience": "league", "method": "POST", "path": PATH, "body": body,
    } | kw  # fmt: skip
    return verify(token, **args)  # type: ignore[arg-type]


def test_a_known_sites_assertion_names_it() -> None:
    assert check(assertion("region", KEY, "league", "POST", PATH, b"{}")) == "region"


@pytest.mark.parametrize(
    ("token", "kw", "message"),
    [
        ("garbage", {}, "not a JWT"),
        (assertion("stranger", KEY, "league", "POST", PATH, b"{}"), {}, "not a site we know"),
        (
            assertion("region", Ed25519PrivateKey.generate(), "league", "POST", PATH, b"{}"),
            {},
            "not signed by region",
        ),
        (assertion("region", KEY, "league", "POST", PATH, b"{}"), {"body": b"[]"}, r"\(bh\)"),
        (assertion("region", KEY, "other", "POST", PATH, b"{}"), {}, r"\(aud\)"),
        (assertion("region", KEY, "league", "POST", "/x", b"{}"), {}, r"\(htu\)"),
        (
            assertion("region", KEY, "league", "POST", PATH, b"{}"),
            {"now": time.time() + 600},
            "expired",
        ),
    ],
)
def test_anything_else_is_refused_with_the_reason(
    token: str, kw: dict[str, object], message: str
) -> None:
    with pytest.raises(BadSiteAssertion, match=message):
        check(token, **kw)

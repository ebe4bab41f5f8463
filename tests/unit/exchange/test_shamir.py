"""Shamir sharing over GF(256): the field's laws, every k-of-n subset recovers the secret,
fewer shares or mixed splits are refused, and k-1 shares carry no information about it."""

from __future__ import annotations

import itertools
import secrets
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.errors import InvalidInput
from exchange.shamir import Share, combine, div, mul, split


def test_field_laws_exhaustively() -> None:
    for a in range(256):
        assert mul(a, 1) == a and mul(a, 0) == 0
        if a:
            assert mul(a, div(1, a)) == 1  # every nonzero element has an inverse
    # AES's worked example (FIPS-197 4.2): {57} x {83} = {c1}
    assert mul(0x57, 0x83) == 0xC1
    for a, b, c in itertools.product((1, 2, 3, 0x53, 0xCA, 0xFF), repeat=3):
        assert mul(a, mul(b, c)) == mul(mul(a, b), c)
        assert mul(a, b ^ c) == mul(a, b) ^ mul(a, c)


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=48), st.integers(2, 7), st.data())
def test_any_threshold_subset_recovers(secret: bytes, k: int, data: st.DataObject) -> None:
    n = data.draw(st.integers(k, 9))
    shares = split(secret, n, k)
    for subset in itertools.combinations(shares, k):
        assert combine(list(subset)) == secret
    assert combine(shares) == secret  # more than needed is fine


def test_fewer_shares_mixed_splits_and_typos_are_refused() -> None:
    secret = secrets.token_bytes(32)
    shares = split(secret, 5, 3)
    with pytest.raises(InvalidInput, match="too few recovery shares: 2 given, 3 needed"):
        combine(shares[:2])
    with pytest.raises(InvalidInput, match="too few"):
        combine([shares[0], shares[0], shares[0]])  # one share thrice is one share
    other = split(secrets.token_bytes(32), 5, 2)
    with pytest.raises(InvalidInput, match="one split"):
        combine([shares[0], shares[1], other[2]])
    text = shares[0].encode()
    assert Share.decode(text) == shares[0]
    typo = text[:10] + ("0" if text[10] != "0" else "1") + text[11:]
    with pytest.raises(InvalidInput, match="mistyped"):
        Share.decode(typo)
    with pytest.raises(InvalidInput):
        split(secret, 2, 3)


def test_threshold_minus_one_shares_say_nothing_about_the_secret() -> None:
    """With k=2, one share's byte is uniform whatever the secret: over many splits of two
    different secrets, the first share's first byte takes (nearly) every value for both."""
    seen = {s: Counter(split(bytes([s]), 3, 2)[0].y[0] for _ in range(4000)) for s in (0, 255)}
    for counts in seen.values():
        assert len(counts) > 240 and max(counts.values()) < 60

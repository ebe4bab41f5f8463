"""Cursors keep their format: the signer writes what the JSON encoder wrote, byte for byte."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from dataplane import cursor as cursors
from exchange.errors import InvalidInput

KEY = cursors.cursor_key(b"m" * 32)


def _json_cursor(offsets: dict[int, int]) -> str:
    """The cursor as the JSON encoder wrote it before the signer (and as clients hold it)."""
    body = json.dumps({str(p): o for p, o in sorted(offsets.items())}, separators=(",", ":"))
    payload = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
    mac = hmac.new(KEY, f"sub-1.{payload}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"1.{payload}.{mac}"


@pytest.mark.parametrize(
    "offsets",
    [{}, {0: 0}, {0: 12, 1: 5}, {2: 7, 0: 1, 10: 99_999_999_999}, {p: p * 1000 for p in range(12)}],
)
def test_signer_matches_encode_byte_for_byte(offsets: dict[int, int]) -> None:
    signer = cursors.Signer(KEY, "sub-1")
    once = signer.encode(offsets)
    assert once == cursors.encode(KEY, "sub-1", offsets)
    assert once == _json_cursor(offsets)  # the format cursors have always had
    assert signer.encode(offsets) == once  # the keyed MAC is copied, never consumed
    assert cursors.decode(KEY, "sub-1", once) == offsets


def test_a_signers_cursor_is_bound_to_its_subscription() -> None:
    token = cursors.Signer(KEY, "sub-1").encode({0: 3})
    with pytest.raises(InvalidInput):
        cursors.decode(KEY, "sub-2", token)

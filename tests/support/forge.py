"""Hand-made hostile JWTs: ``alg=none`` and HS256 keyed with a public key (alg confusion)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def alg_none(claims: dict[str, Any], kid: str) -> str:
    return _segments({"alg": "none", "kid": kid, "typ": "at+jwt"}, claims) + "."


def hs256_with(secret: bytes, claims: dict[str, Any], kid: str, typ: str = "at+jwt") -> str:
    """HS256 keyed with ``secret`` — e.g. the verifier's *public* key, the classic confusion."""
    signing_input = _segments({"alg": "HS256", "kid": kid, "typ": typ}, claims)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"

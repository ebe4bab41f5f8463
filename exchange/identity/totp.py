"""TOTP second factor (RFC 6238, SHA-1, 6 digits, 30 s) on ``cryptography``'s implementation.

A code is accepted for the current step and one step either side (clock drift); the step of
the last accepted code is kept so one code never signs in twice.
"""

from __future__ import annotations

import base64
import secrets
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor import InvalidToken
from cryptography.hazmat.primitives.twofactor.totp import TOTP

STEP_S = 30
DIGITS = 6
ISSUER = "exchange"


def new_secret() -> bytes:
    return secrets.token_bytes(20)


def _totp(secret: bytes) -> TOTP:
    return TOTP(secret, DIGITS, SHA1(), STEP_S, enforce_key_length=False)  # noqa: S303 - RFC 6238


def text(secret: bytes) -> str:
    """The secret as authenticator apps expect to type it (base32, no padding)."""
    return base64.b32encode(secret).decode().rstrip("=")


def uri(secret: bytes, account: str, issuer: str = ISSUER) -> str:
    label = quote(f"{issuer}:{account}")
    query = urlencode({"secret": text(secret), "issuer": issuer, "digits": DIGITS})
    return f"otpauth://totp/{label}?{query}"


def code_at(secret: bytes, when: float) -> str:
    return _totp(secret).generate(int(when)).decode()


def accepted_step(secret: bytes, code: str, now: float, last_step: int) -> int | None:
    """The step ``code`` belongs to if it is valid now and newer than ``last_step``."""
    if len(code) != DIGITS or not code.isdigit():
        return None
    step = int(now) // STEP_S
    totp = _totp(secret)
    for candidate in (step - 1, step, step + 1):
        if candidate <= last_step:
            continue
        try:
            totp.verify(code.encode(), candidate * STEP_S)
        except InvalidToken:
            continue
        return candidate
    return None

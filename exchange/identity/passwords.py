"""People's passwords: scrypt (memory-hard, from ``cryptography``), compared in constant time.

Stored as ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<digest b64>`` so the cost can be raised later
without breaking old hashes. n = 2**15, r = 8 takes 32 MiB per check.
"""

from __future__ import annotations

import base64
import hmac
import secrets

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

LOG_N, R, P = 15, 8, 1
MIN_LENGTH = 12
MAX_LENGTH = 1024  # bounds the hashing work an attacker can ask for


def _derive(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**log_n, r=r, p=p).derive(password.encode())


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _derive(password, salt, LOG_N, R, P)
    b64 = base64.b64encode
    return f"scrypt${LOG_N}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    if len(password) > MAX_LENGTH:
        return False
    try:
        scheme, log_n, r, p, salt_b64, digest_b64 = stored.split("$")
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        ok_params = scheme == "scrypt" and 10 <= int(log_n) <= 20
    except ValueError:
        return False
    if not ok_params:
        return False
    actual = _derive(password, salt, int(log_n), int(r), int(p))
    return hmac.compare_digest(actual, expected)


def password_problems(password: str) -> list[str]:
    """Why a new password is refused (empty: acceptable)."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        problems.append(f"a password has at most {MAX_LENGTH} characters")
    return problems


# Verified against when the login is unknown, so the timing does not tell.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))

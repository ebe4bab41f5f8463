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


MIN_DISTINCT = 5
WEAKNESSES = {  # code -> why (the console shows each code in the reader's language)
    "short": f"a password needs at least {MIN_LENGTH} characters",
    "long": f"a password has at most {MAX_LENGTH} characters",
    "repetitive": f"a password needs at least {MIN_DISTINCT} different characters",
    "login": "a password must not contain the login",
}


def weaknesses(password: str, login: str = "") -> list[str]:
    """The codes of what is wrong with a new password (empty: acceptable). Length first
    (NIST SP 800-63B): no composition rules, but nothing trivially guessed — the login, or a
    few characters repeated."""
    found = []
    if len(password) < MIN_LENGTH:
        found.append("short")
    if len(password) > MAX_LENGTH:
        found.append("long")
    if len(set(password)) < MIN_DISTINCT:
        found.append("repetitive")
    if len(login) >= 3 and login.lower() in password.lower():
        found.append("login")
    return found


def password_problems(password: str, login: str = "") -> list[str]:
    """Why a new password is refused, in words (empty: acceptable)."""
    return [WEAKNESSES[code] for code in weaknesses(password, login)]


# Verified against when the login is unknown, so the timing does not tell.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))

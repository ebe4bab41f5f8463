"""Shamir secret sharing over GF(2^8): a secret split into ``n`` shares, any ``k`` of which
recover it and fewer reveal nothing about it.

Each byte of the secret is the constant term of its own random polynomial of degree ``k-1``
(coefficients from :mod:`secrets`); share ``x`` (1..n) holds every polynomial's value at
``x``. Recovery is Lagrange interpolation at 0. Arithmetic is in GF(2^8) with the AES
polynomial x^8+x^4+x^3+x+1 (addition is XOR; multiplication through log/exp tables of the
generator 3). Shares are text: ``exs1-<k>-<x>-<hex>-<check>``, the check being the first
4 bytes of SHA-256 of the rest, so a mistyped share is refused rather than silently
yielding a wrong secret.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from exchange.errors import InvalidInput

_EXP = [0] * 510
_LOG = [0] * 256
_x = 1
for _i in range(255):
    _EXP[_i] = _x
    _LOG[_x] = _i
    _x ^= (_x << 1) ^ (0x11B if _x & 0x80 else 0)  # multiply by the generator 3
for _i in range(255, 510):
    _EXP[_i] = _EXP[_i - 255]


def mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def div(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("division by zero in GF(256)")
    if a == 0:
        return 0
    return _EXP[_LOG[a] - _LOG[b] + 255]


def _eval(coeffs: list[int], x: int) -> int:
    y = 0
    for c in reversed(coeffs):  # Horner
        y = mul(y, x) ^ c
    return y


@dataclass(frozen=True)
class Share:
    threshold: int
    x: int
    y: bytes

    def encode(self) -> str:
        body = f"exs1-{self.threshold}-{self.x}-{self.y.hex()}"
        return f"{body}-{hashlib.sha256(body.encode()).hexdigest()[:8]}"

    @classmethod
    def decode(cls, text: str) -> Share:
        parts = text.strip().split("-")
        if len(parts) != 5 or parts[0] != "exs1":
            raise InvalidInput("not a recovery share (expected exs1-k-x-hex-check)")
        body = "-".join(parts[:4])
        if hashlib.sha256(body.encode()).hexdigest()[:8] != parts[4]:
            raise InvalidInput("recovery share is mistyped or altered (check mismatch)")
        try:
            return cls(int(parts[1]), int(parts[2]), bytes.fromhex(parts[3]))
        except ValueError as exc:
            raise InvalidInput("recovery share is malformed") from exc


def split(secret: bytes, shares: int, threshold: int) -> list[Share]:
    if not 2 <= threshold <= shares <= 255:
        raise InvalidInput("need 2 <= threshold <= shares <= 255")
    polys = [[b, *(secrets.randbelow(256) for _ in range(threshold - 1))] for b in secret]
    return [
        Share(threshold, x, bytes(_eval(p, x) for p in polys)) for x in range(1, shares + 1)
    ]


def combine(shares: list[Share]) -> bytes:
    """The secret from at least ``threshold`` distinct shares of one split."""
    if not shares:
        raise InvalidInput("no recovery shares given")
    k = shares[0].threshold
    distinct = list({s.x: s for s in shares}.values())
    if any(s.threshold != k or len(s.y) != len(distinct[0].y) for s in distinct):
        raise InvalidInput("the recovery shares do not belong to one split")
    if len(distinct) < k:
        raise InvalidInput(f"too few recovery shares: {len(distinct)} given, {k} needed")
    use = distinct[:k]
    out = bytearray(len(use[0].y))
    for i, si in enumerate(use):
        basis = 1  # the Lagrange basis polynomial of si at 0
        for j, sj in enumerate(use):
            if i != j:
                basis = mul(basis, div(sj.x, sj.x ^ si.x))
        for n, yb in enumerate(si.y):
            out[n] ^= mul(yb, basis)
    return bytes(out)

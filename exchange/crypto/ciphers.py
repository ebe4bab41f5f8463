"""The AEAD ciphers an envelope may use, by stable id.

AES-256-GCM uses ``cryptography``'s one-shot ``AESGCM``; SM4-GCM (GB/T 32907 block cipher in
GCM mode, for national-crypto compliance) uses the ``Cipher`` API, which OpenSSL supports.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from exchange.crypto.errors import IntegrityFailure
from exchange.errors import ConfigurationError, InvalidInput

NONCE_BYTES = 12
TAG_BYTES = 16


class CipherId(IntEnum):
    AES256_GCM = 1
    SM4_GCM = 2


@dataclass(frozen=True)
class CipherSpec:
    id: CipherId
    name: str
    key_bytes: int


SPECS = {
    CipherId.AES256_GCM: CipherSpec(CipherId.AES256_GCM, "AES256_GCM", 32),
    CipherId.SM4_GCM: CipherSpec(CipherId.SM4_GCM, "SM4_GCM", 16),
}
BY_NAME = {s.name: s for s in SPECS.values()}


def spec_named(name: str) -> CipherSpec:
    try:
        return BY_NAME[name]
    except KeyError:
        raise InvalidInput(f"unknown cipher {name!r}; use one of {sorted(BY_NAME)}") from None


_BY_ID: dict[int, CipherSpec] = {int(k): v for k, v in SPECS.items()}


def spec_of(cipher_id: int) -> CipherSpec:
    spec = _BY_ID.get(cipher_id)
    if spec is None:
        raise IntegrityFailure("envelope names an unknown cipher")
    return spec


def new_key(spec: CipherSpec) -> bytes:
    return secrets.token_bytes(spec.key_bytes)


class Sm4Gcm:
    """SM4-GCM with the same call shape as ``AESGCM`` (ciphertext followed by the tag)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def encrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
        enc = Cipher(algorithms.SM4(self._key), modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(aad or b"")
        return enc.update(data) + enc.finalize() + enc.tag

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
        body, tag = data[:-TAG_BYTES], data[-TAG_BYTES:]
        dec = Cipher(algorithms.SM4(self._key), modes.GCM(nonce, tag)).decryptor()
        dec.authenticate_additional_data(aad or b"")
        return dec.update(body) + dec.finalize()


Aead = AESGCM | Sm4Gcm


@lru_cache(maxsize=1)
def sm4_supported() -> bool:
    """Whether the OpenSSL under ``cryptography`` offers SM4-GCM (FIPS builds may not)."""
    try:
        Cipher(algorithms.SM4(bytes(16)), modes.GCM(bytes(12))).encryptor()
    except UnsupportedAlgorithm:
        return False
    return True


def aead_for(spec: CipherSpec, key: bytes) -> Aead:
    """A reusable AEAD object for one key (built once per cached DEK)."""
    if spec.id is CipherId.AES256_GCM:
        return AESGCM(key)
    if not sm4_supported():
        raise ConfigurationError("SM4-GCM is not available in this OpenSSL build")
    return Sm4Gcm(key)


def encrypt(spec: CipherSpec, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Ciphertext followed by the 16-byte tag."""
    return aead_for(spec, key).encrypt(nonce, plaintext, aad)


def decrypt_with(aead: Aead, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Raises :class:`IntegrityFailure` if the tag does not verify."""
    if len(sealed) < TAG_BYTES:
        raise IntegrityFailure("envelope is truncated")
    try:
        return aead.decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise IntegrityFailure("envelope failed authentication") from None


def decrypt(spec: CipherSpec, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    return decrypt_with(aead_for(spec, key), nonce, sealed, aad)

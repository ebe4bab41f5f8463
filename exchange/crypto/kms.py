"""The KMS port: key-encryption keys (KEKs) that never leave the provider.

A KEK is named by an alias (the owning department id) and a version; ``create_kek`` adds a
new version (KEK rotation), older versions stay usable for unwrapping until the DEKs under
them are re-wrapped. Every provider raises :class:`KmsUnavailable` when it cannot answer
and :class:`KekNotFound` for an alias it does not hold. Providers: ``kms_memory`` (tests),
``kms_local`` (embedded keystore file), ``kms_pkcs11`` (HSM); wrappers in ``kms_wrappers``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from exchange.crypto.errors import KmsUnavailable

WRAP_FORMAT = b"\x01"


@dataclass(frozen=True, order=True)
class KekRef:
    alias: str
    version: int

    def __str__(self) -> str:
        return f"{self.alias}#v{self.version}"


class Kms(Protocol):
    def create_kek(self, alias: str) -> KekRef: ...

    def current_kek(self, alias: str) -> KekRef: ...

    def wrap(self, kek: KekRef, dek: bytes) -> bytes: ...

    def unwrap(self, kek: KekRef, wrapped: bytes) -> bytes: ...

    def ping(self) -> bool: ...


def wrap_aad(kek: KekRef) -> bytes:
    """Binds a wrapped DEK to the KEK version that wrapped it."""
    return f"exchange.dek.v1|{kek}".encode()


def aes_wrap(kek_bytes: bytes, kek: KekRef, dek: bytes) -> bytes:
    """Software wrap used by the memory and local providers: 0x01 | nonce | AES-GCM(dek)."""
    nonce = secrets.token_bytes(12)
    return WRAP_FORMAT + nonce + AESGCM(kek_bytes).encrypt(nonce, dek, wrap_aad(kek))


def aes_unwrap(kek_bytes: bytes, kek: KekRef, wrapped: bytes) -> bytes:
    if wrapped[:1] != WRAP_FORMAT or len(wrapped) < 29:
        raise KmsUnavailable("wrapped key has an unknown format")
    try:
        return AESGCM(kek_bytes).decrypt(wrapped[1:13], wrapped[13:], wrap_aad(kek))
    except InvalidTag:
        raise KmsUnavailable(f"wrapped key does not open under KEK {kek}") from None

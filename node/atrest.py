"""Optional encryption of the node's stored records (outbox and prefetched inbox).

The node seals nothing for the exchange (field encryption is the site gateway's job); this is
only disk protection on the department's own machine, with a key from a 0600 file
(``<home>/outbox.key``). Format: version byte 1 | 12-byte nonce | AES-256-GCM ciphertext,
the topic (or subscription) bound as associated data so a record cannot be moved between them.
"""

from __future__ import annotations

import os
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from exchange.errors import DependencyUnavailable

_V1 = b"\x01"


class AtRest(Protocol):
    def seal(self, data: bytes, context: str) -> bytes: ...
    def open(self, blob: bytes, context: str) -> bytes: ...


class Plain:
    def seal(self, data: bytes, context: str) -> bytes:
        return data

    def open(self, blob: bytes, context: str) -> bytes:
        return blob


class FileKey:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, data: bytes, context: str) -> bytes:
        nonce = os.urandom(12)
        return _V1 + nonce + self._aead.encrypt(nonce, data, context.encode())

    def open(self, blob: bytes, context: str) -> bytes:
        if blob[:1] != _V1:
            raise DependencyUnavailable(
                "stored record has an unknown format", code="outbox_corrupt"
            )
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], context.encode())
        except InvalidTag as exc:
            raise DependencyUnavailable(
                "stored record fails authentication (wrong key?)", code="outbox_corrupt"
            ) from exc

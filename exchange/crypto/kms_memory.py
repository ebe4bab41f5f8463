"""In-memory KMS for tests; ``available = False`` simulates an outage."""

from __future__ import annotations

import secrets
import threading

from exchange.crypto.errors import KekNotFound, KmsUnavailable
from exchange.crypto.kms import KekRef, aes_unwrap, aes_wrap


class MemoryKms:
    def __init__(self) -> None:
        self._keks: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()
        self.available = True

    def _check(self) -> None:
        if not self.available:
            raise KmsUnavailable("KMS (memory) is unavailable")

    def create_kek(self, alias: str) -> KekRef:
        self._check()
        with self._lock:
            versions = self._keks.setdefault(alias, [])
            versions.append(secrets.token_bytes(32))
            return KekRef(alias, len(versions))

    def current_kek(self, alias: str) -> KekRef:
        self._check()
        with self._lock:
            if not self._keks.get(alias):
                raise KekNotFound(f"no KEK for {alias}")
            return KekRef(alias, len(self._keks[alias]))

    def _key(self, kek: KekRef) -> bytes:
        self._check()
        versions = self._keks.get(kek.alias, [])
        if not 0 < kek.version <= len(versions):
            raise KekNotFound(f"no KEK {kek}")
        return versions[kek.version - 1]

    def wrap(self, kek: KekRef, dek: bytes) -> bytes:
        return aes_wrap(self._key(kek), kek, dek)

    def unwrap(self, kek: KekRef, wrapped: bytes) -> bytes:
        return aes_unwrap(self._key(kek), kek, wrapped)

    def ping(self) -> bool:
        return self.available

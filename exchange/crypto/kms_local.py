"""The embedded KMS: KEKs in one file under ``EXCHANGE_HOME``, sealed with the master key.

``init`` creates the keystore (``exchange kms init``, or the gateway's first start); once
it exists, a missing or unreadable file makes every call fail with KmsUnavailable.
The file (mode 0600) is ``seal(master_key, json, context)`` of
``{"format": 1, "keks": {alias: [base64 KEK v1, v2, ...]}}``. Writers take an exclusive
``flock`` and re-read before changing it, so the CLI and a running gateway can share it;
readers reload when the file changes.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from exchange.crypto.errors import KekNotFound, KmsUnavailable
from exchange.crypto.kms import KekRef, aes_unwrap, aes_wrap
from exchange.errors import DependencyUnavailable
from exchange.secrets_store import seal, unseal

_CONTEXT = "exchange.kms.local.v1"


def keystore_path(home: Path) -> Path:
    return home / "kms" / "keystore.bin"


class LocalKms:
    def __init__(self, path: Path, master_key: bytes) -> None:
        self.path = path
        self._master = master_key
        self._keks: dict[str, list[bytes]] = {}
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    # -- file ---------------------------------------------------------------------------------
    def init(self) -> bool:
        """Create an empty keystore if none exists; True if created."""
        with self._locked():
            if self.path.exists():
                self._load()
                return False
            self._save({})
            return True

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise KmsUnavailable("local keystore is not accessible") from exc
        try:
            with self._lock:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
        finally:
            os.close(fd)

    def _load(self) -> dict[str, list[bytes]]:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return self._keks
            body = json.loads(unseal(self._master, self.path.read_bytes(), _CONTEXT))
        except FileNotFoundError:
            # Never start an empty keystore silently: KEKs would be replaced and every
            # wrapped DEK orphaned. ``init`` (exchange kms init / first start) creates it.
            raise KmsUnavailable("local keystore is missing (run: exchange kms init)") from None
        except (OSError, ValueError, DependencyUnavailable) as exc:
            raise KmsUnavailable("local keystore cannot be read with this master key") from exc
        self._keks = {a: [base64.b64decode(k) for k in ks] for a, ks in body["keks"].items()}
        self._stamp = stamp
        return self._keks

    def _save(self, keks: dict[str, list[bytes]]) -> None:
        body = {
            "format": 1,
            "keks": {a: [base64.b64encode(k).decode() for k in ks] for a, ks in keks.items()},
        }
        tmp = self.path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(seal(self._master, json.dumps(body).encode(), _CONTEXT))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise KmsUnavailable("local keystore cannot be written") from exc
        self._stamp = None
        self._load()

    # -- Kms ----------------------------------------------------------------------------------
    def create_kek(self, alias: str) -> KekRef:
        with self._locked():
            keks = {a: list(v) for a, v in self._load().items()}
            keks.setdefault(alias, []).append(secrets.token_bytes(32))
            self._save(keks)
            return KekRef(alias, len(keks[alias]))

    def current_kek(self, alias: str) -> KekRef:
        with self._lock:
            versions = self._load().get(alias)
        if not versions:
            raise KekNotFound(f"no KEK for {alias}")
        return KekRef(alias, len(versions))

    def _key(self, kek: KekRef) -> bytes:
        with self._lock:
            versions = self._load().get(kek.alias, [])
        if not 0 < kek.version <= len(versions):
            raise KekNotFound(f"no KEK {kek}")
        return versions[kek.version - 1]

    def wrap(self, kek: KekRef, dek: bytes) -> bytes:
        return aes_wrap(self._key(kek), kek, dek)

    def unwrap(self, kek: KekRef, wrapped: bytes) -> bytes:
        return aes_unwrap(self._key(kek), kek, wrapped)

    def ping(self) -> bool:
        try:
            with self._lock:
                self._load()
            return True
        except KmsUnavailable:
            return False

"""The audit's own keys, kept apart from the admin-usable secrets in the database.

- ``audit.key``: HMAC-SHA256 key turning data-subject ids into keyed hashes.
- ``audit-checkpoint.key``: Ed25519 seed signing checkpoints; ``audit-checkpoint.pub`` holds
  the signed-note verifier key that officers copy for offline verification.
Both are 0600 files in EXCHANGE_HOME unless given as environment variables.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from audit.checkpoint import Signer, Verifier
from audit.settings import AuditSettings
from exchange.errors import ConfigurationError
from exchange.secrets_store import load_key

HMAC_KEY_FILE = "audit.key"
SIGNING_KEY_FILE = "audit-checkpoint.key"
VERIFIER_FILE = "audit-checkpoint.pub"


def _secret(value: SecretStr | None, path: Path, create: bool) -> bytes:
    return load_key(value, path, label="audit key", create=create)


def load_hmac_key(home: Path, settings: AuditSettings, *, create: bool = True) -> bytes:
    return _secret(settings.key, home / HMAC_KEY_FILE, create)


def load_signer(home: Path, settings: AuditSettings, *, create: bool = True) -> Signer:
    seed = _secret(settings.signing_key, home / SIGNING_KEY_FILE, create)
    signer = Signer(settings.signer_name, Ed25519PrivateKey.from_private_bytes(seed))
    pub = home / VERIFIER_FILE
    encoded = signer.verifier.encode()
    if not pub.exists() or pub.read_text().strip() != encoded:
        pub.write_text(encoded + "\n")
    return signer


def load_verifier(home: Path) -> Verifier:
    path = home / VERIFIER_FILE
    if not path.exists():
        raise ConfigurationError(f"no checkpoint verifier key at {path}; pass --key")
    return Verifier.parse(path.read_text())


class SubjectHasher:
    """Keyed hashes of data-subject ids: stable for queries, useless without the key."""

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)  # copied per use, never updated

    def __call__(self, subject: str) -> str:
        h = self._keyed.copy()  # saves re-keying (two key blocks hashed) on every call
        h.update(subject.encode())
        return h.hexdigest()


def fingerprint(verifier_key: str) -> str:
    """A short form of the checkpoint verifier key to compare by eye (the console shows the
    same for the key it pinned): the first 128 bits of SHA-256 of the key text, in groups."""
    digest = hashlib.sha256(verifier_key.strip().encode()).hexdigest()[:32]
    return " ".join(digest[i : i + 4] for i in range(0, 32, 4))

"""The installation master key: base64 in ``EXCHANGE_MASTER_KEY`` or a 0600 file in home.

It seals local secrets at rest (token-signing keys, local-KMS KEKs). Several gateway
instances sharing one database must share this key (set the env var on each).
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from exchange.errors import ConfigurationError, DependencyUnavailable
from exchange.settings import Settings

_FORMAT = b"\x01"


def master_key_path(home: Path) -> Path:
    return home / "master.key"


def load_master_key(settings: Settings, *, create: bool = True) -> bytes:
    return load_key(
        settings.master_key,
        master_key_path(settings.resolved_home),
        label="master key",
        create=create,
    )


def load_key(value: SecretStr | None, path: Path, *, label: str, create: bool = True) -> bytes:
    """A 32-byte key: from ``value`` (an env setting) if given, else a 0600 base64 file,
    created on first use. Several processes may start at once: the first to create wins."""
    if value is not None:
        return _decode(value.get_secret_value(), label, "the environment")
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigurationError(f"{path} must not be readable by others (mode {mode:o})")
        return _decode(path.read_text().strip(), label, str(path))
    if not create:
        raise ConfigurationError(f"no {label}: {path} does not exist")
    key = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_key(None, path, label=label, create=False)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(key).decode())
    return key


def _decode(text: str, label: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise ConfigurationError(f"{label} in {where} is not base64") from exc
    if len(key) != 32:
        raise ConfigurationError(f"{label} in {where} must be 32 bytes")
    return key


def seal(key: bytes, plaintext: bytes, context: str) -> bytes:
    nonce = secrets.token_bytes(12)
    return _FORMAT + nonce + AESGCM(key).encrypt(nonce, plaintext, context.encode())


def unseal(key: bytes, blob: bytes, context: str) -> bytes:
    if blob[:1] != _FORMAT:
        raise DependencyUnavailable("sealed secret has an unknown format")
    try:
        return AESGCM(key).decrypt(blob[1:13], blob[13:], context.encode())
    except InvalidTag as exc:
        raise DependencyUnavailable("sealed secret cannot be opened with this master key") from exc

"""Backup and restore of one exchange home's control plane and keys.

A backup directory holds ``manifest.json``, its MAC ``manifest.mac`` and one encrypted file
per item (``*.enc``). Everything is encrypted: the SQLite databases (copied with SQLite's
online backup API, so a running gateway may be backed up), the master key, the local KMS
keystore, the audit HMAC and checkpoint-signing keys (the databases hold the signed
checkpoints) and the embedded broker's credentials. The key comes from the backup
passphrase: scrypt (n=2**15, r=8, p=1, random salt) → HKDF → an AES-256-GCM key (each file
under a fresh nonce, its name and the backup id as associated data) and an HMAC-SHA256 key
over the manifest. A wrong passphrase and a changed manifest fail the same MAC check; a
changed file fails its GCM tag or its SHA-256 in the manifest.

Kafka data is the broker's concern (replication, tiered storage): the backup records the
audit log's size so that a restore can tell whether the topic holds events the backup does
not know (keys created after it: see :func:`stale`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlalchemy import Connection

from exchange import pgbackup, shamir
from exchange.errors import ConfigurationError, ExchangeError, InvalidInput

FORMAT = 1
DATABASES = ("exchange.db", "audit.db")
FILES = (
    "master.key",
    "audit.key",
    "audit-checkpoint.key",
    "audit-checkpoint.pub",
    "admin-credentials.json",
    "auditor-credentials.json",
    "kafka/credentials.json",
    "kafka/client.properties",
)
DIRECTORIES = ("kms",)
SCRYPT = {"n": 2**15, "r": 8, "p": 1}
MIN_PASSPHRASE = 12


class BackupRefused(ExchangeError):
    """A backup that cannot be restored: wrong passphrase, tampered, stale, or no target."""

    code = "backup_refused"


@dataclass(frozen=True)
class Keys:
    enc: bytes
    mac: bytes


def derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> Keys:
    return keys_from(Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode()))


def keys_from(seed: bytes) -> Keys:
    both = HKDF(hashes.SHA256(), 64, salt=None, info=b"exchange-backup-v1").derive(seed)
    return Keys(both[:32], both[32:])


@dataclass(frozen=True)
class Protection:
    """How the backup key is held: a passphrase, or a random recovery key split into
    ``shares`` Shamir shares of which ``threshold`` recover it (no one person holds it)."""

    passphrase: str | None = None
    shares: int = 0
    threshold: int = 0


def _items(home: Path) -> list[str]:
    names = [f for f in FILES if (home / f).is_file()]
    for d in DIRECTORIES:
        if (home / d).is_dir():
            names += sorted(
                str(p.relative_to(home))
                for p in (home / d).rglob("*")
                if p.is_file() and not p.name.endswith(".lock")
            )
    return names


def _sqlite_copy(src: Path) -> bytes:
    """A consistent copy of a live SQLite database (the online backup API)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "copy.db"
        source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
        target = sqlite3.connect(out)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        return out.read_bytes()


def _blob_name(name: str) -> str:
    return name.replace("/", "__") + ".enc"


def create(
    home: Path,
    dest: Path,
    protection: Protection,
    audit_head: Callable[[Path], tuple[int, str]],
    *,
    postgres: tuple[str, Callable[[Connection], tuple[int, str]]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Write an encrypted backup of ``home`` into the empty or new directory ``dest``;
    ``audit_head`` reads (size, log id) from the copied audit database. ``postgres``: the
    control plane's URL and the same reader on a connection, for a PostgreSQL control plane
    (``pg_dump`` instead of the SQLite files). Returns the manifest and, for a split recovery
    key, the shares to hand out (they are not stored anywhere)."""
    salt, backup_id = secrets.token_bytes(16), uuid.uuid4().hex
    handed: list[str] = []
    if protection.passphrase is not None:
        if len(protection.passphrase) < MIN_PASSPHRASE:
            raise InvalidInput(
                f"the backup passphrase must have at least {MIN_PASSPHRASE} characters"
            )
        keys = derive(protection.passphrase, salt, **SCRYPT)
        kdf: dict[str, Any] = {"name": "scrypt", **SCRYPT, "salt": base64.b64encode(salt).decode()}
    else:
        seed = secrets.token_bytes(32)
        handed = [s.encode() for s in shamir.split(seed, protection.shares, protection.threshold)]
        keys = keys_from(seed)
        kdf = {"name": "shamir", "shares": protection.shares, "threshold": protection.threshold}
    marker = "master.key" if postgres else "exchange.db"
    if not (home / marker).is_file():
        raise ConfigurationError(f"no exchange home at {home} (no {marker})")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ConfigurationError(f"backup directory {dest} is not empty")
    if postgres:
        dumped, (audit_size, log_id) = pgbackup.dump(*postgres)
        contents = {pgbackup.DUMP: dumped}
    else:
        contents = {db: _sqlite_copy(home / db) for db in DATABASES if (home / db).is_file()}
    contents |= {name: (home / name).read_bytes() for name in _items(home)}
    if not postgres:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "audit.db"
            copy.write_bytes(contents.get("audit.db", contents["exchange.db"]))
            audit_size, log_id = audit_head(copy)
    files = []
    for name, data in contents.items():
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(keys.enc).encrypt(nonce, data, f"{backup_id}:{name}".encode())
        _write_private(dest / _blob_name(name), nonce + sealed)
        files.append({"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
    manifest = {
        "format": FORMAT,
        "backup_id": backup_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "kdf": kdf,
        "cipher": "AES-256-GCM",
        "audit": {"log_id": log_id, "size": audit_size},
        "control_plane": "postgresql" if postgres else "sqlite",
        "files": files,
    }
    raw = json.dumps(manifest, indent=2, sort_keys=True).encode()
    _write_private(dest / "manifest.json", raw)
    _write_private(dest / "manifest.mac", hmac.new(keys.mac, raw, "sha256").hexdigest().encode())
    return manifest, handed


def read_manifest(src: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((src / "manifest.json").read_bytes())
        manifest["kdf"]["name"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupRefused(f"{src} is not a readable exchange backup") from exc
    if manifest.get("format") != FORMAT or manifest["kdf"]["name"] not in ("scrypt", "shamir"):
        raise BackupRefused(f"{src}: unsupported backup format")
    return manifest


def _keys(kdf: dict[str, Any], passphrase: str | None, shares: list[str]) -> Keys:
    try:
        if kdf["name"] == "shamir":
            return keys_from(shamir.combine([shamir.Share.decode(s) for s in shares]))
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        if n > 2**20 or passphrase is None:
            raise BackupRefused("this backup needs its passphrase")
        return derive(passphrase, base64.b64decode(kdf["salt"]), n, r, p)
    except InvalidInput as exc:
        raise BackupRefused(f"cannot recover the backup key: {exc.message}") from exc
    except (KeyError, ValueError, TypeError) as exc:
        raise BackupRefused("unreadable key parameters in the backup manifest") from exc


def open_backup(
    src: Path, passphrase: str | None = None, shares: list[str] | None = None
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and every file's plaintext, each checked; BackupRefused otherwise."""
    manifest = read_manifest(src)
    try:
        raw = (src / "manifest.json").read_bytes()
        mac = (src / "manifest.mac").read_bytes().strip()
    except OSError as exc:
        raise BackupRefused(f"{src} is not a readable exchange backup") from exc
    keys = _keys(manifest["kdf"], passphrase, shares or [])
    if not hmac.compare_digest(hmac.new(keys.mac, raw, "sha256").hexdigest().encode(), mac):
        raise BackupRefused(
            "wrong passphrase or recovery shares, or the backup manifest was altered"
        )
    out: dict[str, bytes] = {}
    for f in manifest["files"]:
        name = str(f["name"])
        if name.startswith("/") or ".." in Path(name).parts:
            raise BackupRefused(f"unsafe file name in the manifest: {name!r}")
        try:
            blob = (src / _blob_name(name)).read_bytes()
            data = AESGCM(keys.enc).decrypt(
                blob[:12], blob[12:], f"{manifest['backup_id']}:{name}".encode()
            )
        except (OSError, InvalidTag) as exc:
            raise BackupRefused(f"backup file {name} is missing or was altered") from exc
        if hashlib.sha256(data).hexdigest() != f["sha256"]:
            raise BackupRefused(f"backup file {name} does not match the manifest")
        out[name] = data
    return manifest, out


@dataclass
class Installed:
    """Files a restore wrote, and the previous files it set aside (``--force``) so a refused
    restore puts the home back exactly as it was instead of leaving it without its keys."""

    written: list[Path] = field(default_factory=list)
    saved: list[tuple[Path, Path]] = field(default_factory=list)  # (original, set aside at)

    def rollback(self) -> None:
        for path in self.written:
            path.unlink(missing_ok=True)
        for original, kept in reversed(self.saved):
            os.replace(kept, original)

    def commit(self) -> None:
        for _, kept in self.saved:
            kept.unlink(missing_ok=True)


def install(home: Path, contents: dict[str, bytes], *, force: bool = False) -> Installed:
    """Write the restored files into ``home`` (0700 directories, 0600 files); existing files
    (``force``) are set aside until :meth:`Installed.commit` or :meth:`Installed.rollback`."""
    if not force and any((home / n).exists() for n in ("exchange.db", "master.key")):
        raise BackupRefused(
            f"{home} already holds an exchange (exchange.db or master.key): restore onto a "
            "fresh home, or pass --force to overwrite it"
        )
    done = Installed()
    try:
        for name, data in contents.items():
            path = home / name
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # A WAL of another database must not be replayed into the restored one.
            wal, shm = path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")
            for old in (path, wal, shm):
                if old.exists():
                    kept = old.with_name(old.name + ".pre-restore")
                    os.replace(old, kept)
                    done.saved.append((old, kept))
            _write_private(path, data)
            done.written.append(path)
    except BaseException:
        done.rollback()
        raise
    return done


def stale(manifest: dict[str, Any], topic_size: int) -> bool:
    """The audit topic holds events of this log past the backup's index: state created
    after the backup (keys, agreements) would be missing from the restore."""
    return topic_size > int(manifest["audit"]["size"])


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)

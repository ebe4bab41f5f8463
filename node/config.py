"""A node's home: its settings, its department's credentials and its local applications' tokens.

    <home>/node.json          settings (:class:`NodeConfig`)
    <home>/credentials.json   the department's OAuth client (client_id, client_secret), 0600
    <home>/tokens.json        local applications: name → SHA-256 of its bearer token, 0600
    <home>/outbox.db          the SQLite outbox (WAL)
    <home>/outbox.key         optional: 32-byte AES-256-GCM key for records at rest, 0600

Local applications authenticate to the node with a bearer token of their own (``exchange node
token add``); the node keeps only the token's SHA-256 and compares digests in constant time.
They never see the department's client secret, which only the forwarder uses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from node.errors import NodeConfigError

CONFIG = "node.json"
CREDENTIALS = "credentials.json"
TOKENS = "tokens.json"
DATABASE = "outbox.db"
KEY = "outbox.key"


class NodeConfig(BaseModel):
    node_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    gateway_url: str = Field(description="The league site's gateway (through the uplink)")
    publish_topics: list[str] = Field(
        default_factory=list, description="Topics local applications may publish to"
    )
    subscriptions: list[str] = Field(
        default_factory=list, description="Subscription ids (at the site) pulled ahead"
    )
    batch_records: int = Field(default=500, ge=1, le=5000)
    batch_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    bandwidth_bytes_per_s: int | None = Field(default=None, ge=1024)
    max_outbox_bytes: int = Field(default=2 * 1024**3, ge=64 * 1024)
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_batch_records: int = Field(default=5000, ge=1)
    prefetch_max_records: int = Field(default=100_000, ge=1)
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    request_timeout_s: float = Field(default=30.0, gt=0)
    encrypt_at_rest: bool = False


class Credentials(BaseModel):
    client_id: str
    client_secret: str


def write_private(path: Path, body: Any) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(body, f, indent=2)
    os.replace(tmp, path)


def read_private(path: Path) -> Any:
    """A file only its owner may read; a looser one is refused rather than trusted."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise NodeConfigError(f"{path.name} is missing; run `exchange node init`") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise NodeConfigError(f"{path} is readable by others; chmod 600 it")
    return json.loads(path.read_text())


class NodeHome:
    def __init__(self, home: Path) -> None:
        self.home = home

    @property
    def database(self) -> Path:
        return self.home / DATABASE

    def init(self, config: NodeConfig, credentials: Credentials) -> None:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(self.home / CONFIG, config.model_dump())
        write_private(self.home / CREDENTIALS, credentials.model_dump())
        if not (self.home / TOKENS).exists():
            write_private(self.home / TOKENS, {})
        if config.encrypt_at_rest and not (self.home / KEY).exists():
            fd = os.open(self.home / KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))

    def config(self) -> NodeConfig:
        return NodeConfig.model_validate(read_private(self.home / CONFIG))

    def save_config(self, config: NodeConfig) -> None:
        write_private(self.home / CONFIG, config.model_dump())

    def credentials(self) -> Credentials:
        return Credentials.model_validate(read_private(self.home / CREDENTIALS))

    def key(self) -> bytes:
        path = self.home / KEY
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise NodeConfigError(f"{path} is readable by others; chmod 600 it")
        key = path.read_bytes()
        if len(key) != 32:
            raise NodeConfigError(f"{path} must hold exactly 32 bytes")
        return key

    def add_token(self, app: str) -> str:
        """A new bearer token for local application ``app`` (shown once, stored hashed)."""
        tokens = dict(read_private(self.home / TOKENS))
        token = "nt_" + secrets.token_urlsafe(32)
        tokens[app] = _digest(token)
        write_private(self.home / TOKENS, tokens)
        return token

    def tokens(self) -> LocalTokens:
        return LocalTokens(dict(read_private(self.home / TOKENS)))


class LocalTokens:
    """Which local application presents this bearer token (constant-time digest compare)."""

    def __init__(self, digests: dict[str, str]) -> None:
        self.digests = digests

    def app_for(self, token: str) -> str | None:
        presented = _digest(token)
        found = None
        for app, digest in self.digests.items():  # every entry compared: no early exit
            if hmac.compare_digest(presented, digest):
                found = app
        return found


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()

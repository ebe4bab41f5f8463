"""Audit settings, read from ``EXCHANGE_AUDIT_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

TOPIC = "_exchange.audit"


class AuditSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXCHANGE_AUDIT_", extra="ignore")

    topic: str = TOPIC
    origin: str = Field(default="exchange.local/audit", description="Checkpoint origin line.")
    hash: str = Field(default="sha256", description="sha256 or sm3 (fixed for a log's life).")
    retention_days: int = Field(default=180, ge=180, description="Cybersecurity Law minimum.")
    checkpoint_interval_s: float = Field(default=60.0, gt=0)
    key: SecretStr | None = Field(
        default=None, description="Base64 32-byte HMAC key for subject ids; else audit.key."
    )
    signing_key: SecretStr | None = Field(
        default=None, description="Base64 Ed25519 seed signing checkpoints; else a 0600 file."
    )
    signer_name: str = "exchange-audit"


def checkpoint_topic(topic: str) -> str:
    """Signed checkpoints of the log in ``topic`` are also kept in Kafka, next to it."""
    return f"{topic}.checkpoints"

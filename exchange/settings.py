"""Process settings, read from ``EXCHANGE_*`` environment variables."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from exchange.kafka import DEFAULT_CLIENT, KafkaClient
from exchange.kafka.security import KafkaSecurity


class Settings(BaseSettings):
    """Everything the exchange needs to start; secrets are held as ``SecretStr``."""

    model_config = SettingsConfigDict(env_prefix="EXCHANGE_", extra="ignore")

    home: Path = Field(default=Path("./.exchange"), description="Data directory.")
    kafka_bootstrap: str | None = Field(
        default=None, description="External Kafka bootstrap; unset = start the local broker."
    )
    kafka_client: KafkaClient = Field(
        default=DEFAULT_CLIENT,
        description="Kafka client library: librdkafka (confluent-kafka) or kafka-python.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = Field(
        default="PLAINTEXT", description="External Kafka: how clients connect (with BOOTSTRAP)."
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(default=None, description="PEM CA bundle for Kafka TLS.")
    kafka_ssl_certfile: Path | None = Field(default=None, description="PEM client certificate.")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="PEM client private key.")
    kafka_ssl_check_hostname: bool = True
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite file in the home directory."
    )
    host: str = "127.0.0.1"
    port: int = 8080
    keep_alive_s: float = Field(
        default=75.0,
        gt=0,
        description="Idle keep-alive of HTTP connections (s). Longer than clients' pool expiry "
        "(httpx 5 s, most proxies 60 s) so a client never reuses a connection the gateway is "
        "closing at that instant (the request would fail with 'connection reset').",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level; info includes one access line per request."
    )
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="JSON lines, or text; auto: text on a terminal."
    )
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Serve Prometheus /metrics on this port."
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address of the /metrics listener (internal only)."
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces); "
        "tracing is off when unset. Needs the 'otel' extra.",
    )
    instance_id: str | None = Field(
        default=None,
        description="This gateway's slot (Kafka transactional ids); default: host name, home "
        "and listen address hashed. Set it where the host name changes on every start; it "
        "must be unique per running gateway and the same after a restart.",
    )
    kafka_transaction_timeout_ms: int = Field(
        default=30000,
        ge=1000,
        le=900000,
        description="Kafka transaction timeout: how long a transaction of a gateway that died "
        "and is not restarted holds back read_committed delivery (a restarted one aborts "
        "it at once).",
    )
    public_url: str | None = Field(
        default=None, description="URL clients use to reach the gateway (token issuer)."
    )
    token_ttl_seconds: int = 300
    token_audience: str = "exchange"  # noqa: S105 - an audience name, not a secret
    master_key: SecretStr | None = Field(
        default=None, description="Local KMS master key (base64); else a 0600 file in home."
    )
    kms_provider: Literal["local", "pkcs11"] = Field(
        default="local", description="KMS holding department KEKs: local keystore or PKCS#11."
    )
    pkcs11_module: str | None = Field(default=None, description="PKCS#11 library path.")
    pkcs11_token_label: str | None = None
    pkcs11_pin: SecretStr | None = None
    oidc_issuer: str | None = Field(default=None, description="External OIDC issuer URL.")
    oidc_audience: str | None = None
    oidc_allow_http: bool = Field(
        default=False, description="Allow plain-HTTP OIDC URLs beyond loopback (private nets)."
    )
    oidc_department_claim: str = Field(
        default="dept", description="Claim (or dotted path) holding the department id."
    )
    token_leeway_seconds: int = Field(default=30, description="Clock skew allowed on exp/nbf.")
    console_idle_seconds: int = Field(
        default=1800, ge=10, description="A console session ends after this long unused."
    )
    console_session_seconds: int = Field(
        default=8 * 3600, ge=60, description="A console session ends this long after sign-in."
    )
    oidc_console_client_id: str | None = Field(
        default=None,
        description="With an external issuer: its public client the console signs in through.",
    )
    rate_limit_per_second: float = Field(default=2000.0, description="Per-client token refill.")
    rate_limit_burst: int = Field(default=4000, description="Per-client bucket size.")
    webhook_allowed_hosts: list[str] | None = Field(
        default=None,
        description="If set (JSON list), webhook hosts must equal or sit under one of these.",
    )
    webhook_allowed_networks: list[str] | None = Field(
        default=None,
        description="JSON list of CIDRs webhooks may reach although not public (e.g. an "
        "internal receiver's 10.20.0.0/16); everything else non-public is refused.",
    )
    webhook_allow_loopback: bool = Field(
        default=False, description="Local development only: let webhooks reach loopback."
    )
    webhook_retry_base_s: float = Field(
        default=0.5, description="First webhook retry delay; doubles for each of 5 retries."
    )
    max_batch_records: int = 5000
    publish_lanes: int = Field(
        default=1,
        ge=1,
        le=4,
        description="Group commits in flight at once, each on its own transactional producer "
        "(of 4): 2 overlaps the next group's produce with this one's audit append and commit. "
        "One group produces at a time, so groups stay as large as with one lane.",
    )
    idempotency_resolve_after_s: float = Field(
        default=120.0,
        description="An Idempotency-Key claim left unsettled this long (a crash) is resolved "
        "from Kafka on retry; above the Kafka transaction timeout (30 s) plus a slow publish.",
    )
    publish_fast_path: bool = Field(
        default=True,
        description="Serve POST /v1/topics/{topic}/records by the gateway's publish fast path "
        "(gateway/publish_fast.py: same answers, a fraction of the framework's CPU); false "
        "serves it by the FastAPI route.",
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, description="Largest publish request body (bytes)."
    )
    max_request_bytes: int = Field(
        default=1024 * 1024, description="Largest request body of every other route (bytes)."
    )
    sse_streams_per_client: int = Field(
        default=20, ge=1, description="Concurrent Server-Sent-Events streams per client."
    )
    witness_interval_s: float = Field(
        default=300.0,
        ge=0,
        description="With a federation identity: every this many seconds, ask each known site "
        "to cosign our latest audit checkpoint (0 = never; retries back off from 1 s).",
    )

    @cached_property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    def kafka_security(self) -> KafkaSecurity:
        """Credentials for Kafka: the external cluster's settings or the embedded broker's."""
        from exchange.kafka.security import resolve

        return resolve(self)

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_home / 'exchange.db'}"

    def transactional_prefix(self) -> str:
        from exchange.kafka.transactional import slot_prefix

        return slot_prefix(
            self.instance_id, home=self.resolved_home, listen_host=self.host, port=self.port
        )

    @property
    def gateway_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

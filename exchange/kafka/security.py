"""How the exchange authenticates to Kafka: one value, mapped to each client library's config.

``KafkaSecurity`` is built from settings (an external cluster) or from the embedded broker's
credentials file in the home. It imports no Kafka client, so settings and the CLI can use it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from exchange.errors import ConfigurationError

Protocol = Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"]
Mechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]

CREDENTIALS_FILE = Path("kafka") / "credentials.json"
PROPERTIES_FILE = Path("kafka") / "client.properties"


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        # Fail closed at start-up: a SASL protocol without credentials would only fail later,
        # one connection at a time, with a less clear message.
        if self.uses_sasl and (not self.username or self.password is None):
            raise ConfigurationError(
                f"Kafka security protocol {self.protocol} needs a SASL username and password"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ConfigurationError("Kafka TLS client certificate needs both certfile and keyfile")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def _secret(self) -> str:
        assert self.password is not None
        return self.password.get_secret_value()

    def kafka_python_config(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaProducer, KafkaConsumer, KafkaAdminClient."""
        cfg: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_sasl:
            cfg |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self._secret(),
            }
        if self.uses_tls:
            cfg["ssl_check_hostname"] = self.ssl_check_hostname
            for key, path in self._tls_files():
                cfg[f"ssl_{key}"] = str(path)
        return cfg

    def librdkafka_config(self) -> dict[str, str]:
        """Properties for confluent-kafka (librdkafka) Producer, Consumer, AdminClient."""
        cfg = {"security.protocol": self.protocol.lower()}
        if self.uses_sasl:
            cfg |= {
                "sasl.mechanism": self.sasl_mechanism,
                "sasl.username": self.username or "",
                "sasl.password": self._secret(),
            }
        if self.uses_tls:
            names = {"cafile": "ca", "certfile": "certificate", "keyfile": "key"}
            for key, path in self._tls_files():
                cfg[f"ssl.{names[key]}.location"] = str(path)
            cfg["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none"
            )
        return cfg

    def properties_file_text(self) -> str:
        """A Java client config (``--command-config``/``--consumer.config``) for operators."""
        lines = [f"security.protocol={self.protocol}"]
        if self.uses_sasl:
            module = (
                "org.apache.kafka.common.security.plain.PlainLoginModule"
                if self.sasl_mechanism == "PLAIN"
                else "org.apache.kafka.common.security.scram.ScramLoginModule"
            )
            jaas = (
                f"{module} required username={_jaas_quote(self.username or '')} "
                f"password={_jaas_quote(self._secret())};"
            )
            # Java properties treat a backslash as an escape: double them once more.
            lines += [
                f"sasl.mechanism={self.sasl_mechanism}",
                "sasl.jaas.config=" + jaas.replace("\\", "\\\\"),
            ]
        if self.uses_tls:
            # Java reads PEM directly (KIP-651): the CA by location, the client pair inline.
            files = dict(self._tls_files())
            if "cafile" in files:
                lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={files['cafile']}"]
            if "certfile" in files:
                lines += [
                    "ssl.keystore.type=PEM",
                    "ssl.keystore.certificate.chain=" + _pem_value(files["certfile"]),
                    "ssl.keystore.key=" + _pem_value(files["keyfile"]),
                ]
            if not self.ssl_check_hostname:
                lines.append("ssl.endpoint.identification.algorithm=")
        return "".join(f"{line}\n" for line in lines)

    def settings_values(self) -> dict[str, Any]:
        """The ``Settings`` fields (``kafka_*``) that reproduce this value; inverse of
        :func:`from_settings`."""
        values: dict[str, Any] = {
            "kafka_security_protocol": self.protocol,
            "kafka_sasl_mechanism": self.sasl_mechanism,
            "kafka_ssl_check_hostname": self.ssl_check_hostname,
        }
        optional = {
            "kafka_sasl_username": self.username,
            "kafka_sasl_password": self.password,
            "kafka_ssl_cafile": self.ssl_cafile,
            "kafka_ssl_certfile": self.ssl_certfile,
            "kafka_ssl_keyfile": self.ssl_keyfile,
        }
        return values | {k: v for k, v in optional.items() if v is not None}

    def as_env(self) -> dict[str, str]:
        """``EXCHANGE_KAFKA_*`` variables for a child process (holds the password)."""
        env = {}
        for key, value in self.settings_values().items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, bool):
                value = str(value).lower()
            env[f"EXCHANGE_{key.upper()}"] = str(value)
        return env

    def _tls_files(self) -> list[tuple[str, Path]]:
        files = [
            ("cafile", self.ssl_cafile),
            ("certfile", self.ssl_certfile),
            ("keyfile", self.ssl_keyfile),
        ]
        return [(k, p) for k, p in files if p is not None]


def _pem_value(path: Path) -> str:
    """A PEM file as one Java properties value (newlines escaped)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read Kafka TLS file {path}: {exc.strerror}") from None
    return text.strip().replace("\\", "\\\\").replace("\n", "\\n")


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def from_settings(settings: Any) -> KafkaSecurity:
    """The security of the configured external cluster (``EXCHANGE_KAFKA_*`` settings)."""
    return KafkaSecurity(
        protocol=settings.kafka_security_protocol,
        sasl_mechanism=settings.kafka_sasl_mechanism,
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        ssl_cafile=settings.kafka_ssl_cafile,
        ssl_certfile=settings.kafka_ssl_certfile,
        ssl_keyfile=settings.kafka_ssl_keyfile,
        ssl_check_hostname=settings.kafka_ssl_check_hostname,
    )


def embedded(home: Path) -> KafkaSecurity:
    """The exchange's SCRAM credentials for the embedded broker of ``home``."""
    path = home / CREDENTIALS_FILE
    try:
        raw = json.loads(path.read_text())
        return KafkaSecurity(
            protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            username=str(raw["username"]),
            password=SecretStr(str(raw["password"])),
        )
    except FileNotFoundError:
        raise ConfigurationError(
            f"no Kafka credentials in {path}: start the embedded broker once "
            "(exchange kafka start) or set EXCHANGE_KAFKA_BOOTSTRAP"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"unreadable Kafka credentials {path}: {exc}") from None


def resolve(settings: Any) -> KafkaSecurity:
    """External cluster: its settings; embedded broker: the home's generated credentials."""
    if settings.kafka_bootstrap:
        return from_settings(settings)
    return embedded(settings.resolved_home)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)  # O_CREAT keeps the mode of a pre-existing temp file
    os.replace(tmp, path)


def write_properties_file(home: Path, security: KafkaSecurity) -> Path:
    """The client properties file operators point Kafka's Java tools at (0600)."""
    path = home / PROPERTIES_FILE
    write_private(path, security.properties_file_text())
    return path

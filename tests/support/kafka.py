"""Where tests get a real Kafka: an env-given cluster, testcontainers, or the local jars.

The local broker is the embedded one with SASL/SCRAM and ACLs, so every test client (and the
gateway under test) connects with the credentials it generated."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from exchange.kafka.security import KafkaSecurity


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(
                ["docker", "info"], capture_output=True, timeout=10, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass(frozen=True)
class TestKafka:
    __test__ = False  # not a pytest test class
    bootstrap: str
    log_dir: Path | None  # the broker's data directory, when it is on this machine
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    home: Path | None = None  # the embedded broker's home (credentials, properties file)


# The credentials of each broker the session started, by bootstrap: gateways under test
# (ThreadGateway, GatewayProcess) look theirs up here, so tests only pass the address.
_SECURITY: dict[str, KafkaSecurity] = {}


def security_for(bootstrap: str) -> KafkaSecurity:
    return _SECURITY.get(bootstrap, KafkaSecurity())


def register_security(bootstrap: str, security: KafkaSecurity) -> None:
    """For a test's own broker: gateways started on ``bootstrap`` then connect with this."""
    _SECURITY[bootstrap] = security


def _env_security() -> KafkaSecurity:
    """SCRAM credentials for an env-given cluster (``EXCHANGE_TEST_KAFKA_SASL_*``), if any."""
    user = os.environ.get("EXCHANGE_TEST_KAFKA_SASL_USERNAME")
    password = os.environ.get("EXCHANGE_TEST_KAFKA_SASL_PASSWORD")
    if not user or password is None:
        return KafkaSecurity()
    return KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", user, SecretStr(password))


@contextmanager
def kafka_for_tests(workdir: Path) -> Iterator[TestKafka]:
    if explicit := os.environ.get("EXCHANGE_TEST_KAFKA_BOOTSTRAP"):
        log_dir = os.environ.get("EXCHANGE_TEST_KAFKA_LOG_DIR")
        _SECURITY[explicit] = _env_security()
        yield TestKafka(explicit, Path(log_dir) if log_dir else None, _SECURITY[explicit])
        return
    if docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kc:
            yield TestKafka(kc.get_bootstrap_server(), None)
        return
    from exchange.kafka.broker import LocalBroker

    broker = LocalBroker(workdir, heap_mb=768)
    st = broker.start()
    _SECURITY[st.bootstrap] = broker.security()
    try:
        yield TestKafka(st.bootstrap, workdir / "kafka" / "data", broker.security(), workdir)
    finally:
        broker.stop()

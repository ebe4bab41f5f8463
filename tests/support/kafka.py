"""Where tests get a real Kafka: an env-given cluster, testcontainers, or the local jars."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


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


@contextmanager
def kafka_for_tests(workdir: Path) -> Iterator[TestKafka]:
    if explicit := os.environ.get("EXCHANGE_TEST_KAFKA_BOOTSTRAP"):
        log_dir = os.environ.get("EXCHANGE_TEST_KAFKA_LOG_DIR")
        yield TestKafka(explicit, Path(log_dir) if log_dir else None)
        return
    if docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kc:
            yield TestKafka(kc.get_bootstrap_server(), None)
        return
    from exchange.kafka.broker import LocalBroker

    broker = LocalBroker(workdir, heap_mb=768)
    st = broker.start()
    try:
        yield TestKafka(st.bootstrap, workdir / "kafka" / "data")
    finally:
        broker.stop()

"""Where tests get a real Kafka: an env-given cluster, testcontainers, or the local jars."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def kafka_for_tests(workdir: Path) -> Iterator[str]:
    if explicit := os.environ.get("EXCHANGE_TEST_KAFKA_BOOTSTRAP"):
        yield explicit
        return
    if docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kc:
            yield kc.get_bootstrap_server()
        return
    from exchange.kafka.broker import LocalBroker

    broker = LocalBroker(workdir, heap_mb=768)
    st = broker.start()
    try:
        yield st.bootstrap
    finally:
        broker.stop()

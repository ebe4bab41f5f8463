"""A home whose Kafka storage was formatted before SASL is migrated, keeping its topics."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from exchange.home import loose_paths
from exchange.kafka.broker import LocalBroker, new_cluster_id
from exchange.kafka.client import KafkaAdapter, OutRecord
from exchange.kafka.jars import ensure_jars
from exchange.kafka.probe import metadata_answers
from exchange.kafka.security import KafkaSecurity

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _legacy_home(home: Path) -> LocalBroker:
    """What an older exchange left: PLAINTEXT config, storage formatted without SCRAM."""
    broker = LocalBroker(home, heap_mb=384)
    broker._prepare_dirs()
    ports = broker._choose_ports()
    props = broker._write_legacy_config(*ports)
    java = shutil.which("java")
    assert java is not None
    cluster_id = new_cluster_id()  # never "-…", which the storage tool reads as an option
    cp = f"{ensure_jars()}/*"
    tool = ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)]
    done = subprocess.run(
        [java, *broker._jvm_args(), "-cp", cp, *tool],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    broker._run(java, cp, props, *ports, None, 90.0)  # plaintext, as it used to run
    return broker


def test_plaintext_home_is_migrated_to_sasl(tmp_path: Path) -> None:
    home = tmp_path / "home"
    broker = _legacy_home(home)
    st = broker.state()
    assert st is not None
    old = KafkaAdapter(st.bootstrap, client_id="legacy")
    old.create_topic("dept.kept", 1)
    old.send_durably("dept.kept", OutRecord(b"k", b"written before SASL"))
    old.close()
    broker.stop()
    assert broker.credentials() is None

    st = LocalBroker(home, heap_mb=384).start()  # migrates, then runs with SASL + ACLs
    try:
        security = broker.security()
        assert not metadata_answers(st.bootstrap, KafkaSecurity(), timeout=3)
        assert metadata_answers(st.bootstrap, security)
        kafka = KafkaAdapter(st.bootstrap, client_id="migrated", security=security)
        reader = kafka.reader("dept.kept")
        reader.seek({})
        values = [r.value for _ in range(10) for r in reader.poll(timeout_ms=300)]
        reader.close()
        kafka.close()
        assert values == [b"written before SASL"]
        assert loose_paths(home) == []
    finally:
        LocalBroker(home).stop()

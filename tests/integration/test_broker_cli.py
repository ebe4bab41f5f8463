"""``exchange kafka`` and ``exchange up`` start-up failures: one clear line, non-zero exit."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from exchange.kafka.broker import free_port

pytestmark = pytest.mark.kafka


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:")
    return lines[0]


def test_start_status_stop(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    started = run_cli("kafka", "start", "--home", home)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("bootstrap=127.0.0.1:")
    try:
        status = run_cli("kafka", "status", "--home", home)
        assert status.returncode == 0
        assert status.stdout.split()[0] == started.stdout.split()[0]
        # A client config for Kafka's Java tools, private like the credentials it holds.
        shown = [ln for ln in status.stdout.splitlines() if ln.startswith("client.properties=")]
        props = Path(shown[0].split("=", 1)[1])
        assert props == Path(home) / "kafka" / "client.properties"
        assert "security.protocol=SASL_PLAINTEXT" in props.read_text()
        for private in (props, Path(home) / "kafka" / "credentials.json"):
            assert stat.S_IMODE(private.stat().st_mode) == 0o600
    finally:
        assert run_cli("kafka", "stop", "--home", home).stdout.strip() == "stopped"
    assert run_cli("kafka", "status", "--home", home).returncode == 1


def test_missing_java_is_reported(tmp_path: Path) -> None:
    bindir = Path(sys.executable).parent
    proc = run_cli("kafka", "start", "--home", str(tmp_path), env={"PATH": str(bindir)})
    assert "Java is not installed" in one_error_line(proc)


def test_busy_port_is_reported(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run_cli("kafka", "start", "--home", str(tmp_path), "--port", str(port))
    assert f"port {port} is already in use" in one_error_line(proc)


def test_busy_gateway_port_is_reported(tmp_path: Path, kafka_bootstrap: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run_cli(
            "up",
            "--home",
            str(tmp_path),
            "--port",
            str(port),
            env={"EXCHANGE_KAFKA_BOOTSTRAP": kafka_bootstrap},
        )
    assert f"gateway port {port} is already in use" in one_error_line(proc)


def test_unwritable_home_is_reported(tmp_path: Path) -> None:
    home = tmp_path / "ro"
    home.mkdir()
    home.chmod(0o500)
    try:
        if os.access(home, os.W_OK):  # root ignores mode bits: use a path under a file instead
            home = tmp_path / "file"
            home.write_text("x")
            home = home / "home"
        proc = run_cli("up", "--home", str(home))
    finally:
        (tmp_path / "ro").chmod(0o700)
    assert "is not writable" in one_error_line(proc)


def test_unreachable_external_bootstrap_is_reported(tmp_path: Path) -> None:
    port = free_port()
    proc = run_cli(
        "up", "--home", str(tmp_path), env={"EXCHANGE_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}
    )
    assert f"external Kafka at 127.0.0.1:{port} is unreachable" in one_error_line(proc)

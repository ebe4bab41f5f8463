"""A real single-node Apache Kafka broker (KRaft, broker+controller) run from the Maven jars.

State lives under ``<home>/kafka``: ``server.properties``, ``data/``, ``logs/server.log`` and
``state.json`` (pid, ports, bootstrap) so ``exchange kafka status|stop`` find a running broker.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from exchange.errors import ConfigurationError, KafkaUnavailable
from exchange.kafka.jars import KAFKA_VERSION, ensure_jars
from exchange.kafka.probe import metadata_answers

_LOG4J2 = """status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {logs}/server.log
appender.file.filePattern = {logs}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
"""


@dataclass(frozen=True)
class BrokerState:
    pid: int
    broker_port: int
    controller_port: int
    version: str

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Servers (the JVM, uvicorn) bind with SO_REUSEADDR, so TIME_WAIT does not block them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


class LocalBroker:
    """Start, find and stop the embedded broker of one exchange home."""

    def __init__(
        self,
        home: Path,
        *,
        version: str = KAFKA_VERSION,
        heap_mb: int = 512,
        broker_port: int | None = None,
    ) -> None:
        self.home = home
        self.dir = home / "kafka"
        self.version = version
        self.heap_mb = heap_mb
        self.requested_port = broker_port

    # -- state ---------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def log_file(self) -> Path:
        return self.dir / "logs" / "server.log"

    def state(self) -> BrokerState | None:
        """The running broker of this home, or None (stale state files are ignored)."""
        try:
            raw = json.loads(self.state_file.read_text())
            st = BrokerState(**raw)
        except (OSError, ValueError, TypeError):
            return None
        return st if pid_alive(st.pid) else None

    def _previous_ports(self) -> tuple[int, int] | None:
        try:
            raw = json.loads((self.dir / "ports.json").read_text())
            return int(raw["broker_port"]), int(raw["controller_port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # -- start ---------------------------------------------------------------------------
    def start(self, *, timeout: float = 90.0) -> BrokerState:
        running = self.state()
        if running is not None:
            return running
        java = shutil.which("java")
        if java is None:
            raise ConfigurationError(
                "Java is not installed (no 'java' on PATH): cannot start Kafka"
            )
        self._prepare_dirs()
        lib = ensure_jars(self.version)
        broker_port, controller_port = self._choose_ports()
        props = self._write_config(broker_port, controller_port)
        (self.dir / "ports.json").write_text(
            json.dumps({"broker_port": broker_port, "controller_port": controller_port})
        )
        classpath = f"{lib}/*"
        if not (self.dir / "data" / "meta.properties").exists():
            self._format(java, classpath, props)
        proc = self._launch(java, classpath, props)
        st = BrokerState(proc.pid, broker_port, controller_port, self.version)
        self.state_file.write_text(json.dumps(asdict(st)))
        self._await_ready(proc, st, timeout)
        return st

    def _prepare_dirs(self) -> None:
        try:
            (self.dir / "logs").mkdir(parents=True, exist_ok=True)
            (self.dir / "data").mkdir(parents=True, exist_ok=True)
            probe = self.dir / ".writable"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise ConfigurationError(
                f"exchange home {self.home} is not writable: {exc.strerror}"
            ) from exc

    def _choose_ports(self) -> tuple[int, int]:
        if self.requested_port is not None:
            if not port_free(self.requested_port):
                raise ConfigurationError(
                    f"cannot start Kafka: port {self.requested_port} is already in use"
                )
            return self.requested_port, free_port()
        prev = self._previous_ports()
        # Reuse the previous ports when free so tools pointed at the old address keep working.
        if prev and all(port_free(p) for p in prev):
            return prev
        return free_port(), free_port()

    def _write_config(self, broker_port: int, controller_port: int) -> Path:
        data = self.dir / "data"
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{broker_port},"
            f"CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{broker_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "transaction.max.timeout.ms": "900000",
        }
        props = self.dir / "server.properties"
        props.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        (self.dir / "log4j2.properties").write_text(_LOG4J2.format(logs=self.dir / "logs"))
        return props

    def _jvm_args(self) -> list[str]:
        return [
            f"-Xmx{self.heap_mb}m",
            f"-Xms{min(self.heap_mb, 256)}m",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1" if os.environ.get("EXCHANGE_KAFKA_FAST_JIT") else "-server",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.dir / 'logs'}",
        ]

    def _format(self, java: str, classpath: str, props: Path) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        proc = subprocess.run(
            [
                java,
                *self._jvm_args(),
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(props),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            raise ConfigurationError(
                "Kafka storage format error: " + (msg[-1] if msg else f"exit {proc.returncode}")
            )

    def _launch(self, java: str, classpath: str, props: Path) -> subprocess.Popen[bytes]:
        out = (self.dir / "logs" / "stdout.log").open("ab")
        try:
            return subprocess.Popen(
                [java, *self._jvm_args(), "-cp", classpath, "kafka.Kafka", str(props)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the terminal is ours to relay, not the JVM's
            )
        finally:
            out.close()

    def _await_ready(self, proc: subprocess.Popen[bytes], st: BrokerState, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.state_file.unlink(missing_ok=True)
                raise ConfigurationError(self._crash_reason(st))
            if metadata_answers(st.bootstrap, timeout=2.0):
                return
            time.sleep(0.3)
        self.stop()
        raise KafkaUnavailable(
            f"Kafka did not become ready within {timeout:.0f}s (see {self.log_file})"
        )

    def _crash_reason(self, st: BrokerState) -> str:
        text = ""
        for f in (self.log_file, self.dir / "logs" / "stdout.log"):
            with contextlib.suppress(OSError):
                text += f.read_text(errors="replace")[-20000:]
        if "Address already in use" in text or "BindException" in text:
            return f"cannot start Kafka: port {st.broker_port} or {st.controller_port} is in use"
        if "meta.properties" in text or "Invalid cluster.id" in text or "not formatted" in text:
            return f"Kafka storage format error in {self.dir / 'data'}"
        last = [ln for ln in text.splitlines() if "ERROR" in ln or "Exception" in ln]
        detail = last[-1].strip() if last else "no error in the log"
        return f"Kafka exited during start-up: {detail} (see {self.log_file})"

    # -- stop ----------------------------------------------------------------------------
    def stop(self, *, timeout: float = 30.0) -> bool:
        """SIGTERM the broker (clean shutdown), SIGKILL after ``timeout``. True if one ran."""
        try:
            raw = json.loads(self.state_file.read_text())
            pid = int(raw["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if not pid_alive(pid):
            self.state_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            _reap(pid)
            time.sleep(0.1)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            _reap(pid)
        self.state_file.unlink(missing_ok=True)
        return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)

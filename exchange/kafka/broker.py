"""A real single-node Apache Kafka broker (KRaft, broker+controller) run from the Maven jars.

State lives under ``<home>/kafka``: ``server.properties``, ``data/``, ``logs/server.log`` and
``state.json`` (pid, ports, bootstrap) so ``exchange kafka status|stop`` find a running broker.

The broker is the exchange's alone: its client listener takes SASL/SCRAM-SHA-512 only, the
StandardAuthorizer denies whatever no ACL allows, and the exchange's principal is the one super
user. The credentials are generated on first start into ``kafka/credentials.json`` (0600) and
put into the KRaft metadata when the storage is formatted. Every file the JVM writes is 0600.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from exchange.errors import ConfigurationError, KafkaUnavailable
from exchange.home import secure_home
from exchange.kafka.jars import KAFKA_VERSION, ensure_jars
from exchange.kafka.log4j2 import write_log4j2
from exchange.kafka.probe import metadata_answers
from exchange.kafka.security import (
    CREDENTIALS_FILE,
    PROPERTIES_FILE,
    KafkaSecurity,
    write_private,
    write_properties_file,
)

LOGGERS = {"kafka": "INFO", "org.apache.kafka": "INFO"}
CLIENT_USER = "exchange"  # the exchange's own principal, User:exchange (super user)
CONTROLLER_USER = "controller"  # broker <-> controller inside the JVM, User:controller
_SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"
_PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
# Files the JVM creates (segments, indexes, checkpoints, logs) get no group/other bits.
_UMASK = 0o077


@dataclass(frozen=True)
class BrokerCredentials:
    """Generated once per home; never logged, only written to 0600 files."""

    client_password: str
    controller_password: str

    @property
    def client_security(self) -> KafkaSecurity:
        from pydantic import SecretStr

        return KafkaSecurity(
            protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            username=CLIENT_USER,
            password=SecretStr(self.client_password),
        )


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


def new_cluster_id() -> str:
    """A random Kafka cluster id. Like Kafka's own ``Uuid.randomUuid()``, never one that starts
    with "-": the storage tool would read it as an option (``-t -x...`` fails to format)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


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
        self._child: subprocess.Popen[bytes] | None = None  # the broker this object started

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

    # -- credentials ---------------------------------------------------------------------
    @property
    def credentials_file(self) -> Path:
        return self.home / CREDENTIALS_FILE

    @property
    def properties_file(self) -> Path:
        return self.home / PROPERTIES_FILE

    def credentials(self) -> BrokerCredentials | None:
        try:
            raw = json.loads(self.credentials_file.read_text())
            return BrokerCredentials(str(raw["password"]), str(raw["controller_password"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"unreadable Kafka credentials {self.credentials_file}: {exc}"
            ) from None

    def security(self) -> KafkaSecurity:
        """How the exchange's own clients connect to this broker."""
        creds = self.credentials()
        if creds is None:
            raise ConfigurationError(
                f"no Kafka credentials in {self.credentials_file}: start the broker first"
            )
        return creds.client_security

    def _create_credentials(self) -> BrokerCredentials:
        # Hex keeps the values safe inside the StorageTool's [name=..,password=..] syntax.
        creds = BrokerCredentials(secrets.token_hex(24), secrets.token_hex(24))
        self._save_credentials(creds)
        return creds

    def _save_credentials(self, creds: BrokerCredentials) -> None:
        body = {
            "username": CLIENT_USER,
            "password": creds.client_password,
            "mechanism": "SCRAM-SHA-512",
            "controller_password": creds.controller_password,
        }
        write_private(self.credentials_file, json.dumps(body, indent=2))

    # -- start ---------------------------------------------------------------------------
    def crashed(self) -> tuple[int, str] | None:
        """(pid, how it ended) of a broker of this home that died without being stopped (its
        state file is left behind; ``stop`` removes it); None if it runs or was stopped."""
        try:
            pid = int(json.loads(self.state_file.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if pid_alive(pid):
            return None
        child = self._child
        if child is None or child.pid != pid:
            return pid, "exited"  # not ours to reap: how it ended is unknown
        try:
            # A killed JVM's main thread is a zombie before its other threads are gone.
            code = child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return pid, "exited"
        return pid, f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"

    def restart(self, *, timeout: float = 90.0, port_wait_s: float = 10.0) -> BrokerState:
        """Start again on the previous ports (clients hold the old bootstrap address); a
        port another process took meanwhile is an error, not a move."""
        prev = self._previous_ports()
        deadline = time.monotonic() + port_wait_s
        while prev and not all(port_free(p) for p in prev):
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"cannot restart Kafka: port {prev[0]} or {prev[1]} in use")
            time.sleep(0.2)
        return self.start(timeout=timeout)

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
        classpath = f"{lib}/*"
        broker_port, controller_port = self._choose_ports()
        write_private(
            self.dir / "ports.json",
            json.dumps({"broker_port": broker_port, "controller_port": controller_port}),
        )
        formatted = (self.dir / "data" / "meta.properties").exists()
        creds = self.credentials()
        if creds is None and formatted:
            creds = self._migrate_to_sasl(java, classpath, broker_port, controller_port, timeout)
        elif creds is None:
            creds = self._create_credentials()
        props = self._write_config(broker_port, controller_port, creds)
        write_properties_file(self.home, creds.client_security)
        if not formatted:
            self._format(java, classpath, props, creds)
        return self._run(java, classpath, props, broker_port, controller_port, creds, timeout)

    def _run(
        self,
        java: str,
        classpath: str,
        props: Path,
        broker_port: int,
        controller_port: int,
        creds: BrokerCredentials | None,
        timeout: float,
    ) -> BrokerState:
        proc = self._child = self._launch(java, classpath, props)
        st = BrokerState(proc.pid, broker_port, controller_port, self.version)
        write_private(self.state_file, json.dumps(asdict(st)))
        security = creds.client_security if creds is not None else KafkaSecurity()
        self._await_ready(proc, st, security, timeout)
        return st

    def _migrate_to_sasl(
        self, java: str, classpath: str, broker_port: int, controller_port: int, timeout: float
    ) -> BrokerCredentials:
        """A home formatted before SASL: add the SCRAM user through a last plaintext start.

        The metadata log only takes bootstrap credentials at format time, so the old broker is
        started once more as it was (loopback, no auth), the user is created with the admin
        API, and the broker is stopped; the caller then starts it with SASL and ACLs."""
        from exchange.kafka.probe import add_scram_user

        props = self._write_legacy_config(broker_port, controller_port)
        st = self._run(java, classpath, props, broker_port, controller_port, None, timeout)
        creds = BrokerCredentials(secrets.token_hex(24), secrets.token_hex(24))
        try:
            add_scram_user(st.bootstrap, CLIENT_USER, creds.client_password)
        except KafkaUnavailable as exc:
            raise ConfigurationError(
                f"could not add SASL credentials to the Kafka data in {self.dir / 'data'} "
                f"(formatted by an older exchange without SASL): {exc.message}. Remove it "
                "to start with an empty, secured broker."
            ) from None
        finally:
            self.stop()
        self._save_credentials(creds)
        return creds

    def _prepare_dirs(self) -> None:
        secure_home(self.home)
        try:
            for d in (self.dir, self.dir / "logs", self.dir / "data"):
                d.mkdir(parents=True, exist_ok=True, mode=0o700)
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

    def _common_config(self, controller_port: int) -> dict[str, str]:
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.dir / "data"),
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

    def _write_config(
        self, broker_port: int, controller_port: int, creds: BrokerCredentials
    ) -> Path:
        client_jaas = (
            f'{_SCRAM} required username="{CLIENT_USER}" password="{creds.client_password}";'
        )
        # PLAIN with one static user: SCRAM cannot guard the controller listener (its
        # credentials live in the metadata the controller serves), and without it any local
        # process could send admin requests (CreateAcls, AlterUserScramCredentials) there.
        pw = creds.controller_password
        controller_jaas = (
            f'{_PLAIN} required username="{CONTROLLER_USER}" password="{pw}" '
            f'user_{CONTROLLER_USER}="{pw}";'
        )
        lines = self._common_config(controller_port) | {
            "listeners": f"CLIENT://127.0.0.1:{broker_port},"
            f"CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"CLIENT://127.0.0.1:{broker_port}",
            "inter.broker.listener.name": "CLIENT",
            "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.client.sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.client.scram-sha-512.sasl.jaas.config": client_jaas,
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": controller_jaas,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{CLIENT_USER};User:{CONTROLLER_USER}",
        }
        return self._write_props(lines)

    def _write_legacy_config(self, broker_port: int, controller_port: int) -> Path:
        """The unauthenticated configuration of homes created before SASL (migration only)."""
        lines = self._common_config(controller_port) | {
            "listeners": f"PLAINTEXT://127.0.0.1:{broker_port},"
            f"CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{broker_port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        }
        return self._write_props(lines)

    def _write_props(self, lines: dict[str, str]) -> Path:
        props = self.dir / "server.properties"
        write_private(props, "".join(f"{k}={v}\n" for k, v in lines.items()))
        write_log4j2(self.dir / "log4j2.properties", self.dir / "logs", "server.log", LOGGERS)
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

    def _format(self, java: str, classpath: str, props: Path, creds: BrokerCredentials) -> None:
        cluster_id = new_cluster_id()
        scram = f"SCRAM-SHA-512=[name={CLIENT_USER},password={creds.client_password}]"
        # The password goes through a 0600 argument file, not argv (world-readable in /proc).
        argfile = self.dir / ".format.args"
        args = ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)]
        write_private(argfile, "\n".join([*args, "--add-scram", scram]) + "\n")
        try:
            proc = subprocess.run(
                [java, *self._jvm_args(), "-cp", classpath, f"@{argfile}"],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
                umask=_UMASK,
            )
        finally:
            argfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            raise ConfigurationError(
                "Kafka storage format error: " + (msg[-1] if msg else f"exit {proc.returncode}")
            )

    def _launch(self, java: str, classpath: str, props: Path) -> subprocess.Popen[bytes]:
        stdout = self.dir / "logs" / "stdout.log"
        fd = os.open(stdout, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            return subprocess.Popen(
                [java, *self._jvm_args(), "-cp", classpath, "kafka.Kafka", str(props)],
                stdout=fd,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the terminal is ours to relay, not the JVM's
                umask=_UMASK,
            )
        finally:
            os.close(fd)

    def _await_ready(
        self,
        proc: subprocess.Popen[bytes],
        st: BrokerState,
        security: KafkaSecurity,
        timeout: float,
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.state_file.unlink(missing_ok=True)
                raise ConfigurationError(self._crash_reason(st))
            if metadata_answers(st.bootstrap, security, timeout=2.0):
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


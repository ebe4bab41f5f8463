"""The system under test: one Kafka broker and one gateway subprocess (``exchange up``).

The gateway runs in its own process so its RSS can be read with psutil and so the bench
clients do not share its interpreter (GIL). The broker comes from
``EXCHANGE_BENCH_KAFKA_BOOTSTRAP`` or is started from the embedded jars in a temp home.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from exchange.client import ExchangeClient
from exchange.kafka import DEFAULT_CLIENT
from exchange.kafka.broker import LocalBroker, free_port
from exchange.kafka.security import KafkaSecurity

BOOTSTRAP_ENV = "EXCHANGE_BENCH_KAFKA_BOOTSTRAP"
# The gateway's Kafka client library: EXCHANGE_KAFKA_CLIENT of the bench's own environment.
KAFKA_CLIENT = os.environ.get("EXCHANGE_KAFKA_CLIENT", DEFAULT_CLIENT)


@dataclass
class Broker:
    bootstrap: str
    local: LocalBroker | None  # None: an external broker we must not stop
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

    @classmethod
    def start(cls, workdir: Path) -> Broker:
        if given := os.environ.get(BOOTSTRAP_ENV):
            # An external broker's credentials come from the usual EXCHANGE_KAFKA_* settings.
            from exchange.kafka.security import from_settings
            from exchange.settings import Settings

            return cls(given, None, from_settings(Settings()))
        local = LocalBroker(workdir / "kafka-home", heap_mb=768)
        return cls(local.start().bootstrap, local, local.security())

    def stop(self) -> None:
        if self.local is not None:
            self.local.stop()


@dataclass
class Gateway:
    """``python -m cli.main up`` against a given broker, on a free port."""

    home: Path
    bootstrap: str
    extra_env: dict[str, str] = field(default_factory=dict)
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 120.0) -> Gateway:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
        env |= {"EXCHANGE_HOME": str(self.home), "EXCHANGE_KAFKA_BOOTSTRAP": self.bootstrap}
        env |= self.security.as_env()
        env |= self.extra_env
        with (self.home / "gateway.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "up", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._await_ready(timeout)
        return self

    def _await_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"gateway not ready after {timeout}s; see {self.log}")

    @property
    def log(self) -> Path:
        return self.home / "gateway.log"

    def admin(self) -> ExchangeClient:
        creds = json.loads((self.home / "admin-credentials.json").read_text())
        return ExchangeClient(self.url, creds["client_id"], creds["client_secret"], timeout=60)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Bench:
    """What every measure gets: the running system, an admin client, and the scale."""

    broker: Broker
    gateway: Gateway
    admin: ExchangeClient
    quick: bool
    shared: dict[str, object] = field(default_factory=dict)  # e.g. the publish topic

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    @property
    def security(self) -> KafkaSecurity:
        return self.broker.security


# Tokens outlive the longest phase, so a slow phase measures the gateway, not a 401; the rate
# limit leaves room for the fan-out's subscription burst and several publishing threads.
GATEWAY_ENV = {
    "EXCHANGE_RATE_LIMIT_PER_SECOND": "20000",
    "EXCHANGE_RATE_LIMIT_BURST": "40000",
    "EXCHANGE_TOKEN_TTL_SECONDS": "3600",
    "EXCHANGE_KAFKA_CLIENT": KAFKA_CLIENT,
    # the fan-out bench opens every stream with one client's token (default cap: 20)
    "EXCHANGE_SSE_STREAMS_PER_CLIENT": "5000",
    # group commits in flight at once (Settings.publish_lanes), if the bench's env sets it
    **{k: v for k, v in os.environ.items() if k == "EXCHANGE_PUBLISH_LANES"},
}


@contextmanager
def system(workdir: Path, quick: bool) -> Iterator[Bench]:
    """A broker (given or started) and a fresh gateway home; both stopped afterwards."""
    broker = Broker.start(workdir)
    try:
        gateway = Gateway(
            workdir / "gateway", broker.bootstrap, GATEWAY_ENV, security=broker.security
        ).start()
        try:
            yield Bench(broker, gateway, gateway.admin(), quick)
        finally:
            gateway.stop()
    finally:
        broker.stop()

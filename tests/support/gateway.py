"""Run the real gateway for tests: ``exchange up`` as a subprocess, or uvicorn in a thread."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from exchange.auditing import AuditSink
from exchange.client import ExchangeClient
from exchange.crypto.kms import Kms
from exchange.kafka.broker import free_port
from exchange.settings import Settings
from tests.support.kafka import security_for


def wait_ready(
    url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"gateway at {url} not ready")


@dataclass
class GatewayProcess:
    """``exchange up`` in a subprocess against a given Kafka bootstrap."""

    home: Path
    bootstrap: str | None  # None: `exchange up` starts its own local broker
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
        env["EXCHANGE_HOME"] = str(self.home)
        if self.bootstrap:
            env["EXCHANGE_KAFKA_BOOTSTRAP"] = self.bootstrap
            env |= security_for(self.bootstrap).as_env()
        return {**env, **self.extra_env}

    def start(self) -> GatewayProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        log = (self.home / "gateway.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", "--port", str(self.port)],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_ready(self.url, timeout=180, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def admin_credentials(self) -> dict[str, Any]:
        creds: dict[str, Any] = json.loads((self.home / "admin-credentials.json").read_text())
        return creds

    def admin(self) -> ExchangeClient:
        c = self.admin_credentials()
        return ExchangeClient(self.url, c["client_id"], c["client_secret"])

    def auditor(self) -> ExchangeClient:
        c = json.loads((self.home / "auditor-credentials.json").read_text())
        return ExchangeClient(self.url, c["client_id"], c["client_secret"])


class ThreadGateway:
    """The gateway app served by uvicorn in a background thread (faster than a subprocess)."""

    def __init__(
        self,
        home: Path,
        bootstrap: str,
        *,
        audit: AuditSink | None = None,
        kms: Kms | None = None,
        **settings: Any,
    ) -> None:
        """``audit``/``kms``: fakes the test controls (see gateway.bootstrap)."""
        from cli.up_cmd import ensure_admin, ensure_console_people
        from gateway.app import build_services, create_app

        self.port = free_port()
        self.home = home
        kafka = security_for(bootstrap).settings_values()
        self.settings = Settings(
            home=home, port=self.port, kafka_bootstrap=bootstrap, **(kafka | settings)
        )
        self.services = build_services(self.settings, bootstrap, audit=audit, kms=kms)
        ensure_admin(self.settings, self.services.identity)
        ensure_console_people(self.settings, self.services.people)
        self.app = create_app(self.services)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=self.port,
                timeout_keep_alive=int(self.settings.keep_alive_s),
                log_level="warning",
                access_log=False,
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadGateway:
        self.thread.start()
        wait_ready(self.url)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def admin(self) -> ExchangeClient:
        c = json.loads((self.home / "admin-credentials.json").read_text())
        return ExchangeClient(self.url, c["client_id"], c["client_secret"])

    def auditor(self) -> ExchangeClient:
        """The bootstrap auditor: the only one who can mint further auditors."""
        c = json.loads((self.home / "auditor-credentials.json").read_text())
        return ExchangeClient(self.url, c["client_id"], c["client_secret"])

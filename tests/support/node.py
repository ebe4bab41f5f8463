"""A county node for tests: ``exchange node run`` as a real subprocess (SIGKILL-able)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from exchange.kafka.broker import free_port
from node.config import Credentials, NodeConfig, NodeHome

REPO = Path(__file__).resolve().parents[2]


class NodeProcess:
    def __init__(
        self,
        home: Path,
        gateway_url: str,
        credentials: Credentials,
        *,
        topics: list[str] | None = None,
        subscriptions: list[str] | None = None,
        **config: Any,
    ) -> None:
        self.home = home
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        h = NodeHome(home)
        h.init(
            NodeConfig(
                gateway_url=gateway_url,
                publish_topics=topics or [],
                subscriptions=subscriptions or [],
                **config,
            ),
            credentials,
        )
        self.token = h.add_token("county-app")
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> NodeProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
        env["PYTHONPATH"] = str(REPO)
        log = (self.home / "node.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "node", "run", "--home", str(self.home),
             "--port", str(self.port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("node not ready")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.http.close()

    def log(self) -> str:
        path = self.home / "node.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def publish(self, topic: str, records: list[dict[str, Any]], **kw: Any) -> httpx.Response:
        return self.http.post(f"/v1/topics/{topic}/records", json={"records": records}, **kw)

    def status(self) -> dict[str, Any]:
        r = self.http.get("/status")
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    def status_cli(self) -> dict[str, Any]:
        """``exchange node status --json``: read from the outbox, node running or not."""
        out = subprocess.run(
            [sys.executable, "-m", "cli.main", "node", "status", "--json", "--home",
             str(self.home)],
            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, check=True,
            cwd=REPO,
        )
        body: dict[str, Any] = json.loads(out.stdout)
        return body

    def wait_drained(self, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = self.status()
            if st["backlog_records"] == 0:
                return st
            time.sleep(0.2)
        raise TimeoutError(f"node backlog not drained: {st} {self.log()}")

"""A county node for tests: ``exchange node run`` as a real subprocess (SIGKILL-able), and the
keyed, numbered records tests publish through it to check "exactly once, in order per key"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from exchange.client import ExchangeClient
from exchange.kafka.broker import free_port
from node.config import Credentials, NodeConfig, NodeHome
from tests.support.linkproxy import LinkProxy

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
            [
                sys.executable,
                "-m",
                "cli.main",
                "node",
                "run",
                "--home",
                str(self.home),
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
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
            [
                sys.executable,
                "-m",
                "cli.main",
                "node",
                "status",
                "--json",
                "--home",
                str(self.home),
            ],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            check=True,
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


# -- numbered records --------------------------------------------------------------------------
KEYS = 50
READING: dict[str, Any] = {  # what records() makes
    "type": "record",
    "name": "Reading",
    "namespace": "gov.county",
    "fields": [
        {"name": "station", "type": "string", "classification": "public"},
        {"name": "n", "type": "long", "classification": "public"},
        {"name": "note", "type": "string", "classification": "public"},
    ],
}
RSS_CAP = 150 * 2**20  # issue 16: a node's RSS whatever the backlog


def creds(c: ExchangeClient) -> Credentials:
    """A department client's credentials, as the node holds them."""
    return Credentials(client_id=c.client_id, client_secret=c._secret)


def records(
    start: int, count: int, tag: str, extra: Callable[[int], dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Record i goes to key i % KEYS with that key's sequence number i // KEYS (``station``,
    ``n``, ``note``: the fields of a county reading), plus ``extra(i)``'s fields."""
    return [
        {
            "key": f"{tag}-{i % KEYS}",
            "value": {"station": f"{tag}-{i % KEYS}", "n": i // KEYS, "note": "x" * 40}
            | (extra(i) if extra else {}),
        }
        for i in range(start, start + count)
    ]


def index_of(key: str, n: int) -> int:
    """The i of :func:`records` that made (key, n)."""
    return n * KEYS + int(key.rsplit("-", 1)[1])


def assert_exactly_once_in_order(got: list[tuple[str, int]], total: int, tag: str) -> None:
    """``got``: (key, n) in arrival order (per key); records 0..total-1 of ``tag``, each once."""
    assert len(got) == len(set(got)), "duplicates arrived"
    expected = {(f"{tag}-{i % KEYS}", i // KEYS) for i in range(total)}
    assert set(got) == expected, f"missing {len(expected - set(got))}"
    last: dict[str, int] = {}
    for key, n in got:
        assert n == last.get(key, -1) + 1, f"{key}: {n} after {last.get(key)}"
        last[key] = n


def publish_across_a_cut(
    node: NodeProcess,
    link: LinkProxy,
    topic: str,
    batch: Callable[[int, int], list[dict[str, Any]]],
    *,
    total: int,
    per_request: int,
    cut_s: float,
) -> dict[str, Any]:
    """Publish ``batch(start, per_request)`` until ``total`` records, the uplink cut for the
    middle half of them and for ``cut_s`` seconds at least however fast the node takes them;
    returns the node's status while still cut (backlog on disk, last error)."""
    cut_at, restore_at = total // 4, total // 4 * 3
    cut_started: float | None = None
    restorer: threading.Timer | None = None
    for start in range(0, total, per_request):
        # ">=": the quarters need not fall on a request's first record (5,000 by 100: 1,250)
        if start >= cut_at and cut_started is None:
            link.cut()
            cut_started = time.monotonic()
        if start >= restore_at and cut_started is not None and restorer is None:
            left = max(0.0, cut_s - (time.monotonic() - cut_started))
            restorer = threading.Timer(left, link.restore)
            restorer.start()
        r = node.publish(topic, batch(start, per_request))
        assert r.status_code == 202, r.text
    assert restorer is not None, "total too small for a cut"
    during = node.status()
    restorer.join()
    return during

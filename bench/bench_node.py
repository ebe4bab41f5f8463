"""County node: catch-up rate after an uplink cut, and the node's RSS.

The node (``exchange node run``, its own process) takes ``n`` records from a local
application while its uplink is down (its gateway URL points at a closed port), is restarted
with the link up, and drains its outbox to the gateway: records/s from the node being ready
to an empty outbox. Baseline: the same records posted straight to the gateway by one HTTP
client in batches of the same size (the forwarder is one sequential sender too). RSS: the
node process's peak, sampled through the fill and the catch-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import bench_publish, world
from bench.env import Bench
from bench.report import measure
from exchange.kafka.broker import free_port
from node.config import Credentials, NodeConfig, NodeHome

BATCH = 500
REPO = Path(__file__).resolve().parents[1]


def scale(quick: bool) -> int:
    return 5_000 if quick else 50_000


class _Node:
    def __init__(self, home: Path, gateway_url: str, creds: Credentials, topic: str) -> None:
        self.home = NodeHome(home)
        self.home.init(
            NodeConfig(gateway_url=gateway_url, publish_topics=[topic], batch_records=BATCH,
                       backoff_base_s=0.1, backoff_max_s=1.0),
            creds,
        )
        self.token = self.home.add_token("bench")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0
        self._sampling = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
        env["PYTHONPATH"] = str(REPO)
        with (self.home.home / "node.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "node", "run", "--home",
                 str(self.home.home), "--port", str(self.port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise TimeoutError("node not ready")
        self._sampling = True
        threading.Thread(target=self._sample, args=(self.proc.pid,), daemon=True).start()

    def _sample(self, pid: int) -> None:
        proc = psutil.Process(pid)
        while self._sampling:
            try:
                self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        self._sampling = False
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

    def status(self, http: httpx.Client) -> dict[str, Any]:
        body: dict[str, Any] = http.get("/status").json()
        return body


def run(b: Bench) -> list[dict[str, Any]]:
    n = scale(b.quick)
    t = world.tenant(b.admin, b.gateway.url, sensitive=True)
    creds = Credentials(client_id=t.publisher.client_id, client_secret=t.publisher._secret)
    bodies = [
        world.publish_body([world.record(i) for i in range(s, min(n, s + BATCH))])
        for s in range(0, n, BATCH)
    ]
    token = t.publisher.token()
    bench_publish.publish_http(b.gateway.url, token, t.topic, bodies[:1], 1)  # warm-up
    direct_s = bench_publish.publish_http(b.gateway.url, token, t.topic, bodies, 1)

    home = Path(b.gateway.home).parent / "node"
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens: the uplink is cut
    node = _Node(home, down, creds, t.topic)
    node.start()
    headers = {"Authorization": f"Bearer {node.token}", "Content-Type": "application/json"}
    try:
        with httpx.Client(base_url=node.url, headers=headers, timeout=60) as http:
            fill_start = time.perf_counter()
            for body in bodies:
                r = http.post(f"/v1/topics/{t.topic}/records", content=body)
                r.raise_for_status()
            fill_s = time.perf_counter() - fill_start
            backlog_bytes = node.status(http)["backlog_bytes"]
        node.stop()
        config = node.home.config()
        node.home.save_config(config.model_copy(update={"gateway_url": b.gateway.url}))
        node.start()  # the link is back
        with httpx.Client(base_url=node.url, headers=headers, timeout=60) as http:
            start = time.perf_counter()
            deadline = time.monotonic() + 600
            while (st := node.status(http))["backlog_records"] > 0:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"node still holds {st['backlog_records']}")
                time.sleep(0.05)
            catch_up_s = time.perf_counter() - start
            if st["forwarded_records"] != n or st["dead_letters"]:
                raise RuntimeError(f"node forwarded {st['forwarded_records']} of {n}")
    finally:
        node.stop()
    # the baseline again after the node's run: on a shared machine the load drifts
    direct_s = (direct_s + bench_publish.publish_http(b.gateway.url, token, t.topic, bodies, 1)) / 2
    mib = node.peak_rss / 2**20
    return [
        measure(
            "node_catch_up",
            "records/s",
            n / catch_up_s,
            n / direct_s,
            ">= 0.5x",
            note=f"{n} records queued at a county node while its uplink was down, then "
            f"forwarded (gzip batches of {BATCH}, one sender); baseline: the same batches "
            "posted straight to the gateway by one client (mean of a run before and after)",
            local_publish_records_per_s=round(n / fill_s, 1),
        ),
        measure(
            "node_rss",
            "MiB",
            mib,
            150.0,
            "<= 150 MiB whatever the backlog",
            note=f"peak RSS of the node process with {n} records "
            f"({backlog_bytes / 2**20:.1f} MiB) backlogged, then forwarded; baseline: the cap",
        ),
    ]

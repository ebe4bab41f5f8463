"""Replication lag league → region through MirrorMaker 2 at ~1,000 records/s offered.

Two embedded brokers (the owner site "league", the remote site "region"), the mirror user and
ACLs ``exchange federation share`` creates, and the MirrorMaker process the federation
supervisor runs (same configuration). Records of ~300 bytes are produced durably (acks=all) at
the owner in batches of 50 every 50 ms; a reader at each site notes when each record becomes
readable. ``replication_lag_p99``: p99 of (readable at the region - produced), against the
baseline of the same record becoming readable at the owner itself (produce → consume on one
cluster); ratio = project / baseline. Quick mode: 15 s of load, full: 60 s.
Run: ``python -m bench.bench_federation [--quick]``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.report import measure, percentile
from exchange.federation.sites import Federation
from exchange.federation.supervisor import flows
from exchange.kafka.broker import LocalBroker
from exchange.kafka.client import KafkaAdapter
from exchange.kafka.jars import ensure_mirror_jars
from exchange.kafka.mirror import ClusterEnd, grant_mirror_reader, launch, write_mm2_config
from exchange.kafka.port import OutRecord
from exchange.kafka.security import KafkaSecurity

TOPIC = "bench-league.residents"
RATE = 1000
BATCH = 50


class Arrivals:
    """Reads ``TOPIC`` at one site and notes when each key became readable."""

    def __init__(self, bootstrap: str, security: KafkaSecurity) -> None:
        self.adapter = KafkaAdapter(bootstrap, client_id="bench-fed", security=security)
        self.seen: dict[bytes, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                reader = self.adapter.reader(TOPIC)
                break
            except Exception:  # the topic is not mirrored yet
                time.sleep(0.2)
        else:
            return
        reader.seek({})
        try:
            while not self.stop.is_set():
                for r in reader.poll(timeout_ms=100):
                    if r.key is not None:
                        self.seen.setdefault(r.key, time.time())
        finally:
            reader.close()
            self.adapter.close()


def _produce(adapter: KafkaAdapter, prefix: str, seconds: float) -> dict[bytes, float]:
    sent: dict[bytes, float] = {}
    payload = b"x" * 300
    step = BATCH / RATE
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < seconds:
        keys = [f"{prefix}-{i + j}".encode() for j in range(BATCH)]
        at = time.time()
        adapter.send_many_durably(TOPIC, [OutRecord(k, payload) for k in keys])
        sent.update(dict.fromkeys(keys, at))
        i += BATCH
        behind = (start + (i / BATCH) * step) - time.monotonic()
        if behind > 0:
            time.sleep(behind)
    return sent


def _wait(arr: Arrivals, keys: list[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(k in arr.seen for k in keys):
        time.sleep(0.1)


def run(quick: bool) -> list[dict[str, Any]]:
    seconds = 15 if quick else 60
    ensure_mirror_jars()
    with tempfile.TemporaryDirectory(prefix="bench-fed-") as tmp:
        work = Path(tmp)
        league_b, region_b = LocalBroker(work / "league"), LocalBroker(work / "region")
        ls, rs = league_b.start(), region_b.start()
        mm2 = None
        try:
            lsec, rsec = league_b.security(), region_b.security()
            owner = KafkaAdapter(ls.bootstrap, client_id="bench-fed-p", security=lsec)
            owner.ensure_topic(TOPIC, 1)
            league, region = Federation(work / "league"), Federation(work / "region")
            lk, rk = league.init("league"), region.init("region")
            league.add_site("region", "http://127.0.0.1:1", rk)
            region.add_site("league", "http://127.0.0.1:1", lk)
            league.share(TOPIC, "region")
            user, password = league.mirror_user("region")
            grant_mirror_reader(ls.bootstrap, lsec, user, password, [TOPIC])
            region.accept(TOPIC, league.grant("region", ls.bootstrap))
            here = ClusterEnd("region", rs.bootstrap, rsec)
            mirror_dir = region.dir / "mirror"
            write_mm2_config(mirror_dir, flows(region, here))
            mm2 = launch(mirror_dir, ensure_mirror_jars(), "region")
            remote, local = Arrivals(rs.bootstrap, rsec), Arrivals(ls.bootstrap, lsec)
            remote.thread.start()
            local.thread.start()
            warm = _produce(owner, "warm", 1.0)  # MirrorMaker discovers and starts copying
            _wait(remote, list(warm), 120)
            sent = _produce(owner, "run", seconds)
            _wait(remote, list(sent), 60)
            _wait(local, list(sent), 10)
            remote.stop.set()
            local.stop.set()
            owner.close()
        finally:
            if mm2 is not None:
                mm2.terminate()
                mm2.wait(timeout=30)
            league_b.stop()
            region_b.stop()
    lag = [(remote.seen[k] - t) * 1000 for k, t in sent.items() if k in remote.seen]
    base = [(local.seen[k] - t) * 1000 for k, t in sent.items() if k in local.seen]
    missing = len(sent) - len(lag)
    note = (
        f"{len(sent)} records in {seconds}s offered at {RATE}/s; {missing} not arrived; "
        f"p50 {percentile(lag, 50):.0f} ms; baseline: readable at the owner itself"
    )
    return [
        measure(
            "replication_lag_p99",
            "ms",
            percentile(lag, 99),
            percentile(base, 99),
            "<= 2000 ms",
            note=note,
        )
    ]


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))

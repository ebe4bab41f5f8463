"""Fan-out: many concurrent SSE subscriptions on one gateway process receiving a steady
stream. Reports delivered/expected, receipt latency and the gateway's peak RSS.

All streams are opened from one asyncio httpx client (one connection each). The topic is
``unconditional`` with public fields, so no agreement is needed per subscription; the
subscriptions are created up front over HTTP (each one audited, as in production).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil

from bench import world
from bench.env import Bench
from bench.report import measure, percentile

FULL_SUBSCRIPTIONS = 1_639
RSS_GOAL_MIB = 1024


@dataclass(frozen=True)
class Scale:
    subscriptions: int
    seconds: float
    rate: int  # records/s published
    batch: int


def scale(quick: bool) -> Scale:
    if quick:
        return Scale(100, 3.0, 20, 10)
    return Scale(FULL_SUBSCRIPTIONS, 20.0, 10, 5)


@dataclass
class Tally:
    connected: int = 0
    received: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class RssSampler(threading.Thread):
    """Peak RSS (MiB) of a process and its children, sampled every 200 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0.0
        self.stop = threading.Event()

    def sample(self) -> float:
        procs = [self.proc, *self.proc.children(recursive=True)]
        return float(sum(p.memory_info().rss for p in procs)) / 2**20

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.peak = max(self.peak, self.sample())


async def _stream(http: httpx.AsyncClient, sub: str, token: str, tally: Tally) -> None:
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    try:
        async with http.stream("GET", f"/v1/subscriptions/{sub}/stream", headers=headers) as r:
            if r.status_code != 200:
                tally.errors.append(f"{r.status_code}")
                return
            first = True
            async for line in r.aiter_lines():
                if first:
                    tally.connected += 1
                    first = False
                if line.startswith("data:"):
                    at = world.now_us()
                    value = json.loads(line[5:]).get("value", {})
                    if "sent_us" in value:
                        tally.received += 1
                        tally.latencies.append((at - value["sent_us"]) / 1000)
    except httpx.HTTPError as exc:
        tally.errors.append(type(exc).__name__)


def _publish(b: Bench, t: world.Tenant, s: Scale) -> int:
    """Publish on schedule for ``s.seconds``; a batch whose slot has passed when the window
    closes is not sent, so an overloaded gateway shows as fewer records, not a longer run.
    Returns the number of records the gateway acknowledged."""
    headers = {"Authorization": f"Bearer {t.publisher.token()}", "Content-Type": "application/json"}
    interval = s.batch / s.rate
    sent = 0
    with httpx.Client(base_url=b.gateway.url, timeout=60, headers=headers) as http:
        t0 = time.monotonic()
        for k in range(int(s.seconds / interval)):
            delay = t0 + k * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif time.monotonic() > t0 + s.seconds:
                break
            recs = [world.record(k * s.batch + i, world.now_us()) for i in range(s.batch)]
            r = http.post(f"/v1/topics/{t.topic}/records", content=world.publish_body(recs))
            r.raise_for_status()
            sent += s.batch
    return sent


async def _fanout(b: Bench, t: world.Tenant, subs: list[str], s: Scale) -> dict[str, Any]:
    started = time.monotonic()
    tally = Tally()
    token = t.subscriber.token()
    limits = httpx.Limits(max_connections=len(subs) + 8, max_keepalive_connections=0)
    sampler = RssSampler(b.gateway.pid)
    idle_rss = sampler.sample()
    sampler.start()
    timeout = httpx.Timeout(60, read=None)
    async with httpx.AsyncClient(base_url=b.gateway.url, limits=limits, timeout=timeout) as http:
        tasks = [asyncio.create_task(_stream(http, sub, token, tally)) for sub in subs]
        deadline = time.monotonic() + 120
        while tally.connected + len(tally.errors) < len(subs) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        connected_rss = sampler.sample()
        started = _phase(f"{tally.connected} streams connected", started)
        sent = await asyncio.to_thread(_publish, b, t, s)
        started = _phase(f"{sent} records published", started)
        expected = sent * len(subs)
        deadline = time.monotonic() + 60
        while tally.received < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        _phase(f"{tally.received} deliveries received", started)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    sampler.stop.set()
    sampler.join()
    return {
        "tally": tally,
        "sent": sent,
        "expected": expected,
        "idle_rss": idle_rss,
        "connected_rss": connected_rss,
        "peak_rss": sampler.peak,
    }


def _subscribe_all(t: world.Tenant, n: int) -> list[str]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: t.subscriber.subscribe(t.topic, start="latest"), range(n)))


def _phase(name: str, since: float) -> float:
    now = time.monotonic()
    print(f"   fanout: {name} in {now - since:.1f}s", file=sys.stderr, flush=True)
    return now


def run(b: Bench) -> list[dict[str, Any]]:
    s = scale(b.quick)
    t = world.tenant(b.admin, b.gateway.url, sensitive=False)
    t.publisher.publish(t.topic, [{"key": "w", "value": world.record(0)}])  # warm the plan
    started = time.monotonic()
    subs = _subscribe_all(t, s.subscriptions)
    _phase(f"{len(subs)} subscriptions created", started)
    got = asyncio.run(_fanout(b, t, subs, s))
    tally: Tally = got["tally"]
    lat = tally.latencies or [float("nan")]
    p99, p50 = percentile(lat, 99), percentile(lat, 50)
    t.close()
    return [
        measure(
            "fanout",
            "records delivered",
            tally.received,
            got["expected"],
            f"all delivered (1.0), RSS <= {RSS_GOAL_MIB} MiB",
            note=f"{len(subs)} SSE streams ({tally.connected} connected, "
            f"{len(tally.errors)} failed), {got['sent']} records published in {s.seconds:.0f}s "
            f"(schedule {s.rate}/s); "
            f"p50 {p50:.0f} / p99 {p99:.0f} / max {max(lat):.0f} ms; gateway RSS idle "
            f"{got['idle_rss']:.0f}, connected {got['connected_rss']:.0f}, "
            f"peak {got['peak_rss']:.0f} MiB",
            subscriptions=len(subs),
            p50_ms=round(p50, 1),
            p99_ms=round(p99, 1),
            max_ms=round(max(lat), 1),
            rss_peak_mib=round(got["peak_rss"], 1),
            rss_idle_mib=round(got["idle_rss"], 1),
            stream_errors=tally.errors[:5],
        ),
        measure(
            "fanout_rss_mib",
            "MiB",
            got["peak_rss"],
            RSS_GOAL_MIB,
            f"<= {RSS_GOAL_MIB} MiB",
            note="gateway process peak RSS during the fan-out (baseline column = the goal)",
        ),
    ]

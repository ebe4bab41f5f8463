"""Fan-out: many concurrent SSE subscriptions on one gateway process receiving a steady
stream. Reports delivered/expected, receipt latency and the gateway's peak RSS.

All streams are opened from one asyncio event loop (one connection each). The topic is
``unconditional`` with public fields, so no agreement is needed per subscription; the
subscriptions are created up front over HTTP (each one audited, as in production).

The streams are read with a small asyncio protocol (:class:`SseReader`: HTTP/1.1 head,
chunked body, SSE events, one JSON decode per record) rather than httpx: with 1,639 streams
on 2 cores, httpx's per-read machinery cost the bench client more CPU than the gateway spent
serving the streams, so the measure was partly of the client. Receipt time is taken as
before, when the event's bytes are read from the socket. ``EXCHANGE_BENCH_FANOUT_CLIENT=httpx``
runs the old client for comparison.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

from bench import world
from bench.env import Bench
from bench.report import measure, percentile

FULL_SUBSCRIPTIONS = 1_639
RSS_GOAL_MIB = 1024
CLIENT = os.environ.get("EXCHANGE_BENCH_FANOUT_CLIENT", "raw")  # or "httpx"


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


class LoopLag:
    """How late this client's event loop runs a 10 ms timer: when the one asyncio client is
    itself the bottleneck, records wait in its socket buffers and this lag shows it."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.01)
            self.lags.append((time.monotonic() - t - 0.01) * 1000)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> dict[str, float]:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        lags = self.lags or [float("nan")]
        return {"p50": percentile(lags, 50), "p99": percentile(lags, 99), "max": max(lags)}


class _Cpu:
    """CPU time (user + system) of this bench process and of the gateway from now on, as a
    share of one core over the wall time: a client near 100 % measures itself."""

    def __init__(self, gateway: psutil.Process) -> None:
        self.me, self.gateway = psutil.Process(), gateway
        self.t0 = time.monotonic()
        self.c0, self.g0 = self._cpu(self.me), self._cpu(gateway)

    @staticmethod
    def _cpu(p: psutil.Process) -> float:
        t = p.cpu_times()
        return float(t.user + t.system)

    def shares(self) -> dict[str, float]:
        wall = max(time.monotonic() - self.t0, 1e-9)
        client, gateway = self._cpu(self.me) - self.c0, self._cpu(self.gateway) - self.g0
        return {
            "client": client / wall,
            "gateway": gateway / wall,
            "client_s": client,
            "gateway_s": gateway,
        }


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


class SseReader(asyncio.Protocol):
    """One SSE stream on a raw connection: the response head, then the chunked body, split
    into events; each ``data:`` line decoded as JSON, its ``value.sent_us`` timed."""

    def __init__(self, request: bytes, tally: Tally) -> None:
        self.request, self.tally = request, tally
        self.head_done = False
        self.buf = b""  # undecoded transfer bytes
        self.text = b""  # dechunked body not yet split into events
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def _fail(self, why: str) -> None:
        self.tally.errors.append(why)
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        at = world.now_us()  # everything in this read arrived together
        self.buf += data
        if not self.head_done:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep:
                return
            status = head.split(b" ", 2)[1]
            if status != b"200":
                return self._fail(status.decode())
            if b"transfer-encoding: chunked" not in head.lower():
                return self._fail("not chunked")
            self.head_done, self.buf = True, rest
            self.tally.connected += 1
        while True:  # dechunk what is complete
            size_line, sep, rest = self.buf.partition(b"\r\n")
            if not sep:
                break
            size = int(size_line.split(b";")[0], 16)
            if len(rest) < size + 2:
                break
            self.text += rest[:size]
            self.buf = rest[size + 2 :]
            if size == 0:
                return self._fail("stream ended")
        *events, self.text = self.text.split(b"\n\n")
        for event in events:
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    value = json.loads(line[5:]).get("value", {})
                    if "sent_us" in value:
                        self.tally.received += 1
                        self.tally.latencies.append((at - value["sent_us"]) / 1000)


async def _raw_stream(url: str, sub: str, token: str, tally: Tally) -> None:
    host, port = urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 80
    request = (
        f"GET /v1/subscriptions/{sub}/stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    try:
        transport, proto = await loop.create_connection(
            lambda: SseReader(request, tally), host, port
        )
    except OSError as exc:
        tally.errors.append(type(exc).__name__)
        return
    try:
        await proto.closed
    finally:
        transport.close()


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
        if CLIENT == "httpx":
            streams = [_stream(http, sub, token, tally) for sub in subs]
        else:
            streams = [_raw_stream(b.gateway.url, sub, token, tally) for sub in subs]
        tasks = [asyncio.create_task(c) for c in streams]
        deadline = time.monotonic() + 120
        while tally.connected + len(tally.errors) < len(subs) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        connected_rss = sampler.sample()
        started = _phase(f"{tally.connected} streams connected", started)
        cpu = _Cpu(sampler.proc)
        lag = LoopLag()
        lag.start()
        sent = await asyncio.to_thread(_publish, b, t, s)
        started = _phase(f"{sent} records published", started)
        expected = sent * len(subs)
        deadline = time.monotonic() + 60
        while tally.received < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        busy = cpu.shares()
        per = max(tally.received, 1) / 1e6  # CPU µs per delivery received
        busy |= {"client_us": busy["client_s"] / per, "gateway_us": busy["gateway_s"] / per}
        client_lag = await lag.stop()
        _phase(
            f"{tally.received} deliveries received; CPU busy while publishing and draining: "
            f"bench client {busy['client']:.0%}, gateway {busy['gateway']:.0%} of one core; "
            f"client loop lag p50 {client_lag['p50']:.0f} / p99 {client_lag['p99']:.0f} ms",
            started,
        )
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
        "cpu": busy,
        "client_lag": client_lag,
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
            f"{len(tally.errors)} failed; {CLIENT} client), {got['sent']} records published "
            f"in {s.seconds:.0f}s "
            f"(schedule {s.rate}/s); "
            f"p50 {p50:.0f} / p99 {p99:.0f} / max {max(lat):.0f} ms; gateway RSS idle "
            f"{got['idle_rss']:.0f}, connected {got['connected_rss']:.0f}, "
            f"peak {got['peak_rss']:.0f} MiB; CPU while publishing: bench client "
            f"{got['cpu']['client']:.0%}, gateway {got['cpu']['gateway']:.0%} of a core "
            f"({got['cpu']['client_us']:.0f} / {got['cpu']['gateway_us']:.0f} µs a delivery); "
            f"client event-loop lag p50 {got['client_lag']['p50']:.0f} / p99 "
            f"{got['client_lag']['p99']:.0f} ms",
            subscriptions=len(subs),
            p50_ms=round(p50, 1),
            p99_ms=round(p99, 1),
            max_ms=round(max(lat), 1),
            rss_peak_mib=round(got["peak_rss"], 1),
            rss_idle_mib=round(got["idle_rss"], 1),
            stream_errors=tally.errors[:5],
            client_cpu_share=round(got["cpu"]["client"], 3),
            client_cpu_us_per_delivery=round(got["cpu"]["client_us"], 1),
            gateway_cpu_us_per_delivery=round(got["cpu"]["gateway_us"], 1),
            gateway_cpu_share=round(got["cpu"]["gateway"], 3),
            client_loop_lag_p99_ms=round(got["client_lag"]["p99"], 1),
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

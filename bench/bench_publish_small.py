"""Small publishes: 1-record requests from 32 concurrent clients (closed loop: each client
sends its next request when the previous one is answered). Reports requests/s and the
request latency percentiles.

This is what government applications mostly send, and where a transaction plus a durable
audit append per request hurt most; group commit shares both across concurrent requests.
The baseline column is the goal (2,000 requests/s), as for ``fanout_rss_mib``: a bare
producer paying one transaction per record is no useful yardstick here.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import psutil

from bench import http_ceiling, world
from bench.env import Bench
from bench.report import measure, percentile

CLIENTS = 32
GOAL_RPS = 2_000
GOAL_P99_MS = 50


def duration(quick: bool) -> float:
    return 3.0 if quick else 20.0


class Conn:
    """One keep-alive HTTP/1.1 connection on raw asyncio streams. httpx's client costs more
    CPU per request than the gateway spends on a 1-record publish, so with it the bench
    would measure its own client; this sends prepared bytes and reads one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Conn:
        host, port = urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 80
        return cls(*await asyncio.open_connection(host, port))

    async def post(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        self.writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def _client(
    url: str, head: bytes, bodies: list[bytes], until: float, lat: list[float], errors: list[str]
) -> None:
    conn = await Conn.open(url)
    try:
        k = 0
        while time.monotonic() < until and not errors:
            body = bodies[k % len(bodies)]
            k += 1
            started = time.perf_counter()
            status, answer = await conn.post(head, body)
            if status != 200:
                errors.append(f"{status} {answer[:300]!r}")
                return
            lat.append((time.perf_counter() - started) * 1000)
    finally:
        conn.close()


async def _load(url: str, token: str, topic: str, seconds: float) -> tuple[list[float], float]:
    head = (
        f"POST /v1/topics/{topic}/records HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        "Content-Length: "
    ).encode()
    lat: list[float] = []
    errors: list[str] = []
    per_client = [
        [world.publish_body([world.record(n * 1_000 + k)]) for k in range(100)]
        for n in range(CLIENTS)
    ]
    started = time.monotonic()
    until = started + seconds
    await asyncio.gather(*(_client(url, head, bodies, until, lat, errors) for bodies in per_client))
    elapsed = time.monotonic() - started
    if errors:
        raise RuntimeError(f"publish failed: {errors[0]}")
    return lat, elapsed


def run(b: Bench) -> list[dict[str, Any]]:
    seconds = duration(b.quick)
    t = world.tenant(b.admin, b.gateway.url)
    token = t.publisher.token()
    asyncio.run(_load(b.gateway.url, token, t.topic, 1.0))  # warm: plan, DEKs, connections
    gateway = psutil.Process(b.gateway.pid)
    before = gateway.cpu_times()
    lat, elapsed = asyncio.run(_load(b.gateway.url, token, t.topic, seconds))
    after = gateway.cpu_times()
    t.close()
    # The gateway's CPU (all its threads, librdkafka's too) per request: steadier than
    # requests/s on a shared machine, where the gateway gets what the others leave.
    cpu_ms = (after.user - before.user + after.system - before.system) / len(lat) * 1000
    rps = len(lat) / elapsed
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    # Same generator, same run, against a bare FastAPI app: what the HTTP stack alone allows.
    with http_ceiling.serving() as ceiling_url:
        asyncio.run(_load(ceiling_url, token, t.topic, 1.0))
        c_lat, c_elapsed = asyncio.run(_load(ceiling_url, token, t.topic, seconds))
    ceiling = len(c_lat) / c_elapsed
    return [
        measure(
            "publish_small",
            "requests/s",
            rps,
            GOAL_RPS,
            f">= {GOAL_RPS} requests/s, p99 <= {GOAL_P99_MS} ms",
            note=f"1-record requests, {CLIENTS} concurrent keep-alive clients, {seconds:.0f}s "
            "closed loop, 3 of 10 fields sealed; "
            f"p50 {p50:.1f} / p99 {p99:.1f} / max {max(lat):.1f} ms "
            "(baseline column = the goal); "
            f"bare FastAPI ceiling {ceiling:.0f} requests/s, p99 {percentile(c_lat, 99):.1f} ms; "
            f"gateway CPU {cpu_ms:.2f} ms per request",
            p50_ms=round(p50, 2),
            p99_ms=round(p99, 2),
            max_ms=round(max(lat), 2),
            requests=len(lat),
            gateway_cpu_ms_per_request=round(cpu_ms, 3),
            ceiling_rps=round(ceiling, 1),
            ceiling_p99_ms=round(percentile(c_lat, 99), 2),
            ratio_to_ceiling=round(rps / ceiling, 3),
        )
    ]

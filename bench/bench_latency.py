"""End-to-end latency: publish -> SSE receipt at a steady 1,000 records/s.

Every record carries its send time (``sent_us``, set right before the POST) and the SSE
reader takes the difference on arrival; both run on this machine, so one clock. Baseline:
the same encoded records at the same rate and batch size through a bare transactional
kafka-python producer to a bare read_committed consumer, the send time in a header.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bench import kafka_bare, world
from bench.env import Bench
from bench.report import measure, percentile

RATE = 1_000  # records/s
BATCH = 20  # records per request: 50 requests/s
SENT_HEADER = "bench.sent_us"


def duration(quick: bool) -> float:
    return 3.0 if quick else 60.0


def steady(seconds: float, send: Callable[[int], None], workers: int = 4) -> int:
    """Call ``send(k)`` at t0 + k*BATCH/RATE for ``seconds``; late calls run at once.
    Workers overlap a slow request with the next slot. Returns the number of batches."""
    interval = BATCH / RATE
    batches = int(seconds / interval)
    t0 = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        futures = []
        for k in range(batches):
            delay = t0 + k * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(send, k))
        for f in futures:
            f.result()
    return batches


class SseReader(threading.Thread):
    """One SSE stream; latencies in ms of every record event."""

    def __init__(self, url: str, token: str, sub: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.sub = url, token, sub
        self.latencies: list[float] = []
        self.connected = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        try:
            with (
                httpx.Client(base_url=self.url, timeout=httpx.Timeout(10, read=None)) as http,
                http.stream("GET", f"/v1/subscriptions/{self.sub}/stream", headers=headers) as r,
            ):
                r.raise_for_status()
                for line in r.iter_lines():
                    self.connected.set()
                    if line.startswith("data:"):
                        at = world.now_us()
                        value = json.loads(line[5:]).get("value", {})
                        if "sent_us" in value:
                            self.latencies.append((at - value["sent_us"]) / 1000)
                    if self.stop.is_set():
                        return
        except BaseException as exc:  # reported by the caller
            self.error = exc
            self.connected.set()


def _await(count: Callable[[], int], n: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while count() < n and time.monotonic() < deadline:
        time.sleep(0.05)


def project(b: Bench, seconds: float) -> tuple[list[float], int]:
    reuse = b.shared.get("publish_tenant")  # same record shape and grant: saves the set-up
    t = reuse if isinstance(reuse, world.Tenant) else world.tenant(b.admin, b.gateway.url)
    token = t.publisher.token()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    # Warm the publish path (schema plan, DEKs) before the subscription starts at "latest".
    t.publisher.publish(t.topic, [{"key": "w", "value": world.record(0)}])
    sub = t.subscriber.subscribe(t.topic, start="latest")
    reader = SseReader(b.gateway.url, t.subscriber.token(), sub)
    reader.start()
    reader.connected.wait(30)
    local = threading.local()

    def send(k: int) -> None:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=b.gateway.url, timeout=60, headers=headers)
        recs = [world.record(k * BATCH + i, world.now_us()) for i in range(BATCH)]
        r = local.http.post(f"/v1/topics/{t.topic}/records", content=world.publish_body(recs))
        r.raise_for_status()

    started = time.monotonic()
    sent = steady(seconds, send) * BATCH
    b.shared["latency_publish_rate"] = sent / (time.monotonic() - started)
    _await(lambda: len(reader.latencies), sent)
    reader.stop.set()
    if reader.error is not None:
        raise RuntimeError(f"SSE reader failed: {reader.error!r}")
    return reader.latencies, sent


def baseline(b: Bench, seconds: float) -> tuple[list[float], int]:
    src = b.shared.get("publish_tenant")
    topic = f"bench-bare-latency-{world.now_us()}"
    kafka_bare.create_topic(b.bootstrap, topic, 3, b.security)
    if isinstance(src, world.Tenant):  # the gateway's own encoded records
        c = kafka_bare.consumer(b.bootstrap, src.topic, security=b.security)
        encoded = kafka_bare.read(c, BATCH * 10)
        c.close()
    else:
        encoded = [
            kafka_bare.Encoded(b"k", json.dumps(world.record(i)).encode(), ()) for i in range(200)
        ]
    latencies: list[float] = []
    reader = kafka_bare.consumer(b.bootstrap, topic, from_end=True, security=b.security)

    def on_record(e: kafka_bare.Encoded) -> None:
        sent = int(dict(e.headers)[SENT_HEADER])
        latencies.append((world.now_us() - sent) / 1000)

    p = kafka_bare.producer(b.bootstrap, b.security)
    lock = threading.Lock()

    def send(k: int) -> None:
        with lock:  # one transactional producer, as in the gateway
            sent = str(world.now_us()).encode()
            batch = [
                kafka_bare.Encoded(e.key, e.value, (*e.headers, (SENT_HEADER, sent)))
                for e in (encoded[(k * BATCH + i) % len(encoded)] for i in range(BATCH))
            ]
            kafka_bare.send_batch(p, topic, batch)

    n = int(seconds / (BATCH / RATE)) * BATCH
    consuming = threading.Thread(
        target=kafka_bare.read, args=(reader, n), kwargs={"each": on_record}
    )
    consuming.start()
    sent = steady(seconds, send, workers=1)
    consuming.join(60)
    reader.close()
    p.close()
    return latencies, sent * BATCH


def _summary(lat: list[float]) -> dict[str, float]:
    if not lat:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": max(lat)}


def run(b: Bench) -> list[dict[str, Any]]:
    seconds = duration(b.quick)
    lat, sent = project(b, seconds)
    # Bare Kafka's latency is steady within seconds; half the window keeps `make bench` short.
    base_seconds = seconds if b.quick else seconds / 2
    base_lat, base_sent = baseline(b, base_seconds)
    p, q = _summary(lat), _summary(base_lat)
    return [
        measure(
            "e2e_p99_ms",
            "ms",
            p["p99"],
            q["p99"],
            "p99 <= 50 ms",
            note=f"{RATE} rec/s x {seconds:.0f}s in batches of {BATCH} (gateway accepted "
            f"{float(str(b.shared.get('latency_publish_rate', 0))):.0f} rec/s); "
            f"gateway p50 {p['p50']:.1f} / max {p['max']:.1f} ms, received {len(lat)}/{sent}; "
            f"bare ({base_seconds:.0f}s) p50 {q['p50']:.1f} / max {q['max']:.1f} ms, "
            f"received {len(base_lat)}/{base_sent}",
            p50_ms=round(p["p50"], 2),
            max_ms=round(p["max"], 2),
            received=len(lat),
            sent=sent,
            baseline_p50_ms=round(q["p50"], 2),
            baseline_max_ms=round(q["max"], 2),
        )
    ]

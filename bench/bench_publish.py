"""Publish: records/s through ``POST /v1/topics/{t}/records`` vs a bare transactional
librdkafka producer (the ``baseline``) and a bare kafka-python one (``baseline_kafka_python``)
sending the very bytes the gateway wrote (read back from its topic).

Project path per batch of 500: token check, rate limit, JSON parse, Avro validation, sealing
of 3 fields, Avro encoding, one Kafka transaction, audit append. Several HTTP clients in
threads keep the gateway busy while one batch waits on Kafka.
"""

from __future__ import annotations

import queue
import threading
import time
from types import ModuleType
from typing import Any

import httpx

from bench import kafka_bare, rdkafka_bare, world
from bench.env import Bench
from bench.report import measure
from exchange.kafka.security import KafkaSecurity

BATCH = 500
THREADS = 4


def scale(quick: bool) -> int:
    return 2_000 if quick else 40_000


def publish_http(url: str, token: str, topic: str, bodies: list[bytes], threads: int) -> float:
    """Post every body from ``threads`` clients; returns elapsed seconds."""
    work: queue.Queue[bytes] = queue.Queue()
    for b in bodies:
        work.put(b)
    errors: list[str] = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=120, headers=headers) as http:
            while not errors:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                r = http.post(f"/v1/topics/{topic}/records", content=body)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:300]}")

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"publish failed: {errors[0]}")
    return elapsed


def publish_bare(
    bootstrap: str,
    topic: str,
    partitions: int,
    encoded: list[kafka_bare.Encoded],
    bare: ModuleType,
    security: KafkaSecurity,
) -> float:
    """One bare producer (``kafka_bare`` or ``rdkafka_bare``), one transaction per batch."""
    kafka_bare.create_topic(bootstrap, topic, partitions, security)
    p = bare.producer(bootstrap, security)
    bare.send_batch(p, topic, encoded[:BATCH])  # warm-up, like the gateway's
    start = time.perf_counter()
    for i in range(0, len(encoded), BATCH):
        bare.send_batch(p, topic, encoded[i : i + BATCH])
    elapsed = time.perf_counter() - start
    if bare is kafka_bare:
        p.close()
    return elapsed


def measure_publish(
    b: Bench, n: int, *, threads: int = THREADS, batch: int = BATCH
) -> dict[str, Any]:
    t = world.tenant(b.admin, b.gateway.url)
    warm = world.publish_body([world.record(-i - 1) for i in range(batch)])
    bodies = [
        world.publish_body([world.record(i) for i in range(s, min(n, s + batch))])
        for s in range(0, n, batch)
    ]
    token = t.publisher.token()
    publish_http(b.gateway.url, token, t.topic, [warm], 1)  # schema plan, DEKs, producer
    project_s = publish_http(b.gateway.url, token, t.topic, bodies, threads)

    c = kafka_bare.consumer(b.bootstrap, t.topic, security=b.security)
    encoded = kafka_bare.read(c, n + batch)
    c.close()
    rest = encoded[batch:]
    rd_s = publish_bare(
        b.bootstrap, f"{t.topic}.bare-rd", t.partitions, rest, rdkafka_bare, b.security
    )
    kp_s = publish_bare(
        b.bootstrap, f"{t.topic}.bare-kp", t.partitions, rest, kafka_bare, b.security
    )

    b.shared["publish_tenant"] = t
    b.shared["publish_count"] = n + batch
    return measure(
        "publish",
        "records/s",
        n / project_s,
        n / rd_s,
        ">= 0.2x",
        baseline_kafka_python=round(n / kp_s, 2),
        note=f"{n} records, batches of {batch}, {threads} HTTP clients, 3 of 10 fields sealed; "
        "baseline: bare librdkafka",
    )


def run(b: Bench) -> list[dict[str, Any]]:
    return [measure_publish(b, scale(b.quick))]

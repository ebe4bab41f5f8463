"""Delivery: records/s to one long-poll subscriber (``max=500``, commit after each page;
policy decision, opening 3 sealed fields, JSON rendering, audit of each page) vs a bare
librdkafka consumer (``baseline``) and a bare kafka-python one (``baseline_kafka_python``)
reading the same topic from the beginning."""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

import httpx

from bench import bench_publish, kafka_bare, rdkafka_bare, world
from bench.env import Bench
from bench.report import measure
from exchange.kafka.security import KafkaSecurity

PAGE = 500


def pull_all(url: str, token: str, sub: str, n: int, timeout_s: float = 300.0) -> float:
    """Pull and commit pages until ``n`` records arrived; returns elapsed seconds."""
    got = 0
    deadline = time.monotonic() + timeout_s
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, timeout=60, headers=headers) as http:
        start = time.perf_counter()
        while got < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"delivered {got} of {n}")
            r = http.get(f"/v1/subscriptions/{sub}/records", params={"max": PAGE, "wait_ms": 1000})
            r.raise_for_status()
            page = r.json()
            got += len(page["records"])
            if page["records"]:
                http.post(
                    f"/v1/subscriptions/{sub}/commit", json={"cursor": page["cursor"]}
                ).raise_for_status()
        return time.perf_counter() - start


def read_bare(
    bootstrap: str, topic: str, n: int, bare: ModuleType, security: KafkaSecurity
) -> float:
    """One bare consumer (``kafka_bare`` or ``rdkafka_bare``) from the beginning."""
    c = bare.consumer(bootstrap, topic, security=security)
    try:
        start = time.perf_counter()
        bare.read(c, n, each=lambda _: None)
        return time.perf_counter() - start
    finally:
        c.close()


def run(b: Bench) -> list[dict[str, Any]]:
    t = b.shared.get("publish_tenant")
    if not isinstance(t, world.Tenant):  # run alone: fill a topic first
        bench_publish.measure_publish(b, bench_publish.scale(b.quick))
        t = b.shared["publish_tenant"]
        assert isinstance(t, world.Tenant)
    n = int(str(b.shared["publish_count"]))
    sub = t.subscriber.subscribe(t.topic, start="earliest")
    project_s = pull_all(b.gateway.url, t.subscriber.token(), sub, n)
    rd_s = read_bare(b.bootstrap, t.topic, n, rdkafka_bare, b.security)
    kp_s = read_bare(b.bootstrap, t.topic, n, kafka_bare, b.security)
    return [
        measure(
            "delivery",
            "records/s",
            n / project_s,
            n / rd_s,
            ">= 0.25x",
            baseline_kafka_python=round(n / kp_s, 2),
            note=f"{n} records, one long-poll client, max={PAGE}, commit per page, 3 fields "
            "opened; baseline: bare librdkafka",
        )
    ]

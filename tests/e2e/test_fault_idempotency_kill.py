"""SIGKILL `exchange up` while clients publish with Idempotency-Keys, restart it, retry every
key that got no answer: each one ends with an answer (replayed if its batch had committed,
published now if not) — never stuck at 409, never published twice, nothing acknowledged lost.
The audit log verifies from Kafka afterwards."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from exchange.client import ExchangeClient
from exchange.kafka import open_kafka
from tests.integration.test_audit_tamper import verify
from tests.support.gateway import GatewayProcess
from tests.support.kafka import security_for
from tests.support.scenario import build, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

THREADS = 6
PER_BATCH = 3
ENV = {"EXCHANGE_IDEMPOTENCY_RESOLVE_AFTER_S": "3"}
RETRY_FOR_S = 150.0  # generous: the restart fences the killed gateway's open transaction


def records(key: str) -> list[dict[str, Any]]:
    return [{"key": f"{key}-{j}", "value": person(j)} for j in range(PER_BATCH)]


def post(c: ExchangeClient, topic: str, key: str) -> httpx.Response:
    return c.request(
        "POST",
        f"/v1/topics/{topic}/records",
        json={"records": records(key)},
        headers={"Idempotency-Key": key},
    )


def flood(
    c: ExchangeClient, topic: str, n: int, stop: threading.Event,
    answered: dict[str, Any], unanswered: list[str],
) -> None:  # fmt: skip
    i = 0
    while not stop.is_set():
        key = f"t{n}-{i}-{uuid.uuid4().hex[:6]}"
        try:
            r = post(c, topic, key)
        except httpx.HTTPError:
            unanswered.append(key)  # sent, then the gateway died: outcome unknown
            return
        if r.status_code == 200:
            answered[key] = r.json()
        else:
            unanswered.append(key)
        i += 1


def kafka_keys(bootstrap: str, topic: str) -> Counter[str]:
    kafka = open_kafka(bootstrap, "fault-idem-check", security=security_for(bootstrap))
    reader = kafka.reader(topic)
    try:
        reader.seek({})
        end = reader.end_offsets()
        seen: Counter[str] = Counter()
        while any(pos < end[p] for p, pos in reader.positions().items()):
            batch = reader.poll(timeout_ms=3000, max_records=2000)
            if not batch:
                break
            seen.update((r.key or b"").decode() for r in batch)
        return seen
    finally:
        reader.close()
        kafka.close()


def test_gateway_sigkill_mid_publish_leaves_no_key_stuck_or_duplicated(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    home = tmp_path / "home"
    gw = GatewayProcess(home, kafka_bootstrap, extra_env=ENV).start()
    with gw.admin() as admin:
        s = build(admin, gw.url)
    cid, secret = s.publisher.client_id, s.publisher._secret
    answered: dict[str, Any] = {}
    unanswered: list[str] = []
    stop = threading.Event()
    clients = [ExchangeClient(gw.url, cid, secret) for _ in range(THREADS)]
    threads = [
        threading.Thread(target=flood, args=(c, s.topic, n, stop, answered, unanswered))
        for n, c in enumerate(clients)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(answered) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGKILL)  # mid-flood: requests are in every stage
    gw.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(30)
    acked_before = len(answered)

    gw = GatewayProcess(home, kafka_bootstrap, port=gw.port, extra_env=ENV).start()
    c = ExchangeClient(gw.url, cid, secret)
    replayed = fresh = conflicts = 0
    stuck: list[str] = []
    t0 = time.monotonic()
    try:
        for key in unanswered:
            while True:
                r = post(c, s.topic, key)
                if r.status_code == 200:
                    answered[key] = r.json()
                    if r.headers.get("Idempotent-Replayed") == "true":
                        replayed += 1
                    else:
                        fresh += 1
                    break
                assert r.status_code == 409, r.text
                conflicts += 1
                if time.monotonic() - t0 > RETRY_FOR_S:
                    stuck.append(key)
                    break
                time.sleep(1.0)
        resolve_s = time.monotonic() - t0
        # Keys answered before the kill replay the same answer.
        for key in list(answered)[:5]:
            r = post(c, s.topic, key)
            assert r.status_code == 200 and r.json() == answered[key]
            assert r.headers.get("Idempotent-Replayed") == "true"
    finally:
        c.close()
        for x in clients:
            x.close()
        s.close()
        gw.stop()

    seen = kafka_keys(kafka_bootstrap, s.topic)
    wanted = {f"{k}-{j}" for k in answered for j in range(PER_BATCH)}
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    lost = len(wanted - set(seen))
    print(
        f"acked before kill={acked_before} unanswered at kill={len(unanswered)} "
        f"resolved: replayed={replayed} published={fresh} (409s meanwhile={conflicts}, "
        f"{resolve_s:.1f}s) stuck={len(stuck)} duplicates={duplicates} lost={lost} "
        f"records in topic={sum(seen.values())}"
    )
    assert unanswered, "the kill caught no request in flight"
    assert not stuck and duplicates == 0 and lost == 0
    assert set(seen) <= wanted  # nothing published that no key answers for
    code, out = verify(home, kafka_bootstrap, "--source", "kafka")
    assert code == 0, out

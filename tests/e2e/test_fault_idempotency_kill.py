"""SIGKILL `exchange up` mid-batch and mid-delivery, restart it: publishers keep sending with
Idempotency-Keys and retry every key that got no answer, one subscriber keeps long-polling
and committing, another follows an SSE stream (resuming with Last-Event-ID) — all through
the kill and the restart.

Every key ends with an answer (replayed if its batch had committed, published now if not):
never stuck at 409, never published twice (counted in the topic itself), nothing
acknowledged lost by either consumer, nothing delivered that no key answers for. Answers
given before the kill replay unchanged. The audit log verifies from Kafka afterwards.
``EXCHANGE_LONG_TESTS=1``: three kills in a row, more traffic."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from exchange.client import ExchangeClient
from exchange.kafka import open_kafka
from tests.integration.test_audit_tamper import verify
from tests.support.gateway import GatewayProcess
from tests.support.kafka import security_for
from tests.support.load import load_for
from tests.support.scenario import build

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

LONG = os.environ.get("EXCHANGE_LONG_TESTS") == "1"
KILLS = 3 if LONG else 1
ENV = {"EXCHANGE_IDEMPOTENCY_RESOLVE_AFTER_S": "3"}


def kafka_keys(bootstrap: str, topic: str) -> Counter[str]:
    """Every record key in the topic (read_committed), counted: a batch written twice shows."""
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


def test_gateway_sigkill_mid_batch_and_mid_delivery_loses_nothing_sticks_nothing(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    home = tmp_path / "home"
    gw = GatewayProcess(home, kafka_bootstrap, extra_env=ENV).start()
    with gw.admin() as admin:
        s = build(admin, gw.url)
    load = load_for(s, [gw.url], sse=True, publishers=4).start()
    in_flight = 0
    try:
        kills: list[float] = []
        for _ in range(KILLS):
            load.wait_acked(len(load.acked) + 20, 90)
            # Both consumers are mid-delivery too: they have caught up with a moving topic.
            before = len(load.acked)
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGKILL)  # mid-flood: requests are in every stage
            kills.append(time.monotonic())
            gw.proc.wait(10)
            gw = GatewayProcess(home, kafka_bootstrap, port=gw.port, extra_env=ENV).start()
            load.wait_acked(before + 10, 150)  # publishing resumed through the restart
        load.drain(90)
    finally:
        load.close()
    # The kill cut requests off: transport errors are what a client sees of a dead gateway.
    in_flight = sum(n for k, n in load.statuses.items() if not k[:1].isdigit())
    r = load.report(stall_from=kills[0])
    c = ExchangeClient(gw.url, s.publisher.client_id, s.publisher._secret)
    try:
        # Keys answered before the (first) kill replay the same answer after the restart.
        early = [k for k, t in load.acked.items() if t < kills[0]][:5]
        for key in early:
            again = c.request(
                "POST",
                f"/v1/topics/{s.topic}/records",
                json=load.bodies[key],
                headers={"Idempotency-Key": key},
            )
            assert again.status_code == 200 and again.json() == load.answers[key], again.text
            assert again.headers.get("Idempotent-Replayed") == "true"
    finally:
        c.close()
        s.close()
        gw.stop()

    seen = kafka_keys(kafka_bootstrap, s.topic)
    wanted = load.wanted()
    r["written_twice"] = sum(n - 1 for n in seen.values() if n > 1)
    r["cut_off_requests"] = in_flight
    print(f"gateway SIGKILL x{KILLS} mid-batch and mid-delivery (long-poll + SSE): {r}")
    assert in_flight > 0, "the kill caught no request in flight"
    assert len(early) == 5, "too few keys answered before the kill"
    assert not any(k.startswith("500") for k in r["statuses"]), r
    assert r["lost"] == 0 and r["stuck_keys"] == 0 and r["unacknowledged_delivered"] == 0, r
    assert r["delivered"] == r["sse_delivered"] == len(wanted), r
    assert r["sse_resumes"] >= KILLS, r  # the stream broke with the gateway and resumed
    assert r["written_twice"] == 0, r  # no retried key published its batch a second time
    assert set(seen) <= wanted  # nothing in the topic that no key answers for
    code, out = verify(home, kafka_bootstrap, "--source", "kafka")
    assert code == 0, out

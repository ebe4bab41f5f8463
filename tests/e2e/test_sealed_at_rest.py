"""Sensitive values published through the gateway never reach Kafka in plaintext."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from exchange.client import ExchangeClient
from exchange.kafka import open_kafka
from tests.support.gateway import ThreadGateway
from tests.support.kafka import security_for
from tests.support.scenario import build, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


def test_no_sensitive_plaintext_in_log_segments_or_raw_consumer(
    gateway: ThreadGateway, admin: ExchangeClient, kafka_bootstrap: str, kafka_log_dir: Path
) -> None:
    s = build(admin, gateway.url, partitions=1)
    people = [person(900 + i) for i in range(20)]
    s.publisher.publish(s.topic, [{"key": p["citizen_id"][-4:], "value": p} for p in people])
    secrets = [
        v
        for p in people
        for v in (p["citizen_id"], p["phone"], p["address"]["street"], repr(p["income"]))
    ]
    public = [p["name"] for p in people]

    kafka = open_kafka(kafka_bootstrap, security=security_for(kafka_bootstrap))
    reader = kafka.reader(s.topic)
    reader.seek({})
    raw = b""
    deadline = time.monotonic() + 15
    count = 0
    while count < len(people) and time.monotonic() < deadline:
        batch = reader.poll(timeout_ms=500)
        count += len(batch)
        raw += b"".join(r.value for r in batch)
    reader.close()
    kafka.close()
    assert count == len(people)
    assert all(name.encode() in raw for name in public)  # the scan can see plaintext
    assert not [v for v in secrets if v.encode() in raw]

    segments = list((kafka_log_dir).glob(f"{s.topic}-*/*.log"))
    assert segments
    disk = b"".join(p.read_bytes() for p in segments)
    assert all(name.encode() in disk for name in public)
    assert not [v for v in secrets if v.encode() in disk]
    s.close()

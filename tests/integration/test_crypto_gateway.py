"""Field crypto inside the real gateway: KMS down → publishing sensitive data is a 503,
nothing is written; back up → the same batch publishes sealed, and shredding over HTTP
turns delivered fields into redacted ones."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from exchange.client import ExchangeClient
from exchange.crypto.kms_memory import MemoryKms
from exchange.kafka import open_kafka
from tests.support.gateway import ThreadGateway
from tests.support.kafka import security_for
from tests.support.scenario import Scenario, build, grant, person, pull

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@pytest.fixture(scope="module")
def kms() -> MemoryKms:
    """A KMS the test can switch off, under a gateway of this module's own."""
    return MemoryKms()


@pytest.fixture(scope="module")
def kms_gateway(
    kms: MemoryKms, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadGateway]:
    gw = ThreadGateway(tmp_path_factory.mktemp("kms-gw"), kafka_bootstrap, kms=kms).start()
    yield gw
    gw.stop()


@pytest.fixture
def admin(kms_gateway: ThreadGateway) -> Iterator[ExchangeClient]:
    with kms_gateway.admin() as c:
        yield c


@pytest.fixture
def scenario(kms_gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[Scenario]:
    s = build(admin, kms_gateway.url, partitions=1)
    yield s
    s.close()


def _raw_values(bootstrap: str, topic: str) -> list[bytes]:
    adapter = open_kafka(
        bootstrap, f"scan-{uuid.uuid4().hex[:6]}", security=security_for(bootstrap)
    )
    reader = adapter.reader(topic)
    try:
        reader.seek({})
        ends = reader.end_offsets()
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and reader.positions() != ends:
            got += [r.value for r in reader.poll(timeout_ms=300)]
        return got
    finally:
        reader.close()
        adapter.close()


def test_kms_down_is_503_and_nothing_written(
    scenario: Scenario, kms: MemoryKms, kafka_bootstrap: str, admin: ExchangeClient
) -> None:
    s = scenario
    batch = [{"key": f"k{i}", "value": person(i)} for i in range(3)]
    kms.available = False
    r = s.publisher.request("POST", f"/v1/topics/{s.topic}/records", json={"records": batch})
    assert r.status_code == 503, r.text
    assert r.json()["code"] in {"kms_unavailable", "dependency_unavailable"}
    assert "3301" not in r.text and "Wensan" not in r.text
    assert _raw_values(kafka_bootstrap, s.topic) == []

    kms.available = True
    s.publisher.publish(s.topic, batch)
    raw = b"".join(_raw_values(kafka_bootstrap, s.topic))
    for rec in (person(i) for i in range(3)):
        for secret in (rec["citizen_id"], rec["phone"], rec["address"]["street"]):
            assert secret.encode() not in raw
    assert b"Resident 1" in raw  # public fields stay in clear

    grant(s, ["name", "citizen_id", "phone"])
    sub = s.subscriber.subscribe(s.topic)
    values = sorted((r["value"] for r in pull(s.subscriber, sub, 3)), key=lambda v: v["name"])
    assert [v["citizen_id"] for v in values] == [person(i)["citizen_id"] for i in range(3)]

    keys = admin.call("GET", "/v1/keys", params={"topic": s.topic})
    assert {k["field"] for k in keys} == {"citizen_id", "income", "phone", "address.street"}
    out = admin.call("POST", "/v1/keys/shred", json={"topic": s.topic, "field": "citizen_id"})
    assert out["shredded"] == 1
    s.subscriber.call("POST", f"/v1/subscriptions/{sub}/seek", json={"start": "earliest"})
    again = s.subscriber.poll(sub, wait_ms=3000)["records"]
    assert again, "replayed records are delivered again"
    for rec in again:
        assert rec["value"]["citizen_id"] is None
        assert rec["value"]["phone"].startswith("+86")
        assert rec["redacted"] == {"citizen_id": "shredded"}, rec

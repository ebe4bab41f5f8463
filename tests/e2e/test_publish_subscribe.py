"""The publish → subscribe path over HTTP against the real gateway and broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from audit.service import Filters
from exchange.auditing import AuditRecord, MemoryAuditSink
from exchange.client import ApiError, ExchangeClient
from exchange.errors import DependencyUnavailable
from tests.support.gateway import ThreadGateway
from tests.support.scenario import Scenario, build, grant, person, pull

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@pytest.fixture
def scenario(gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[Scenario]:
    s = build(admin, gateway.url)
    yield s
    s.close()


def test_publish_then_pull_commit_and_redeliver(scenario: Scenario) -> None:
    s = scenario
    out = s.publisher.publish(s.topic, [{"key": f"k{i}", "value": person(i)} for i in range(10)])
    assert len(out["offsets"]) == 10
    grant(s, ["name", "district", "citizen_id", "address.city"])
    sub = s.subscriber.subscribe(s.topic)

    first = s.subscriber.poll(sub, wait_ms=3000)
    assert first["records"], first
    # Not committed: the same records come again (at-least-once, stable record ids). A page
    # holds what arrived first, so which partition leads a page may differ between polls.
    before = {r["record_id"]: r for r in first["records"]}
    again: dict[str, Any] = {}
    deadline = time.monotonic() + 20
    while not before.keys() <= again.keys() and time.monotonic() < deadline:
        again |= {r["record_id"]: r for r in s.subscriber.poll(sub, wait_ms=1000)["records"]}
    assert before.keys() <= again.keys()
    assert all(again[i]["value"] == before[i]["value"] for i in before)
    s.subscriber.commit(sub, first["cursor"])
    rest = pull(s.subscriber, sub, 10 - len(first["records"]))
    records = first["records"] + rest
    assert sorted(r["value"]["name"] for r in records) == sorted(f"Resident {i}" for i in range(10))
    sample = records[0]["value"]
    # Exactly the granted fields: sealed citizen_id opened, income/phone/street never sent.
    assert set(sample) == {"name", "district", "citizen_id", "address"}
    assert set(sample["address"]) == {"city"}
    assert sample["citizen_id"].startswith("3301")
    assert s.subscriber.poll(sub, wait_ms=200)["records"] == []


def test_invalid_record_rejects_whole_batch_with_paths(scenario: Scenario) -> None:
    s = scenario
    bad = person(2)
    bad["income"] = "lots"
    del bad["address"]["city"]
    r = s.publisher.request(
        "POST",
        f"/v1/topics/{s.topic}/records",
        json={
            "records": [{"value": person(1)}, {"value": bad}, {"value": {**person(3), "extra": 1}}]
        },
    )
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "invalid_records"
    problems = {(e["index"], e["path"]) for e in body["errors"]}
    assert problems == {(1, "income"), (1, "address.city"), (2, "extra")}
    grant(s, ["name"])
    sub = s.subscriber.subscribe(s.topic)
    assert s.subscriber.poll(sub, wait_ms=1500)["records"] == []  # nothing was written


def test_idempotency_key_prevents_duplicates(scenario: Scenario) -> None:
    s = scenario
    batch = [{"key": "a", "value": person(1)}, {"key": "b", "value": person(2)}]
    first = s.publisher.publish(s.topic, batch, idempotency_key="batch-0001")
    retry = s.publisher.request(
        "POST",
        f"/v1/topics/{s.topic}/records",
        json={"records": batch},
        headers={"Idempotency-Key": "batch-0001"},
    )
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == first
    other = s.publisher.request(
        "POST",
        f"/v1/topics/{s.topic}/records",
        json={"records": batch[:1]},
        headers={"Idempotency-Key": "batch-0001"},
    )
    assert other.status_code == 409
    grant(s, ["name"])
    sub = s.subscriber.subscribe(s.topic)
    assert len(pull(s.subscriber, sub, 3, timeout=4)) == 2


def test_size_limits_answer_413(scenario: Scenario, gateway: ThreadGateway) -> None:
    s = scenario
    limit = gateway.settings.max_batch_records
    r = s.publisher.request(
        "POST", f"/v1/topics/{s.topic}/records", json={"records": [{"value": {}}] * (limit + 1)}
    )
    assert r.status_code == 413
    assert r.json()["code"] == "batch_too_large"


def test_other_department_cannot_publish_and_cannot_probe(
    scenario: Scenario, admin: ExchangeClient, gateway: ThreadGateway
) -> None:
    s = scenario
    from tests.support.scenario import new_client

    intruder = new_client(admin, gateway.url, s.consumer, ["publisher"])
    existing = intruder.request(
        "POST", f"/v1/topics/{s.topic}/records", json={"records": [{"value": person(1)}]}
    )
    missing = intruder.request(
        "POST", f"/v1/topics/{s.owner}.nope/records", json={"records": [{"value": person(1)}]}
    )
    assert existing.status_code == missing.status_code == 403
    assert existing.json()["detail"].replace(s.topic, "T") == missing.json()["detail"].replace(
        f"{s.owner}.nope", "T"
    )
    intruder.close()


def test_subscriber_without_grant_is_refused(scenario: Scenario) -> None:
    s = scenario
    with pytest.raises(ApiError) as exc:
        s.subscriber.subscribe(s.topic)
    assert exc.value.status == 403
    with pytest.raises(ApiError) as missing:
        s.subscriber.subscribe(f"{s.owner}.does-not-exist")
    assert missing.value.status == 403


def test_sse_stream_delivers_and_resumes_with_last_event_id(
    scenario: Scenario, gateway: ThreadGateway
) -> None:
    s = scenario
    grant(s, ["name"])
    sub = s.subscriber.subscribe(s.topic, start="latest")
    events: list[dict[str, Any]] = []

    def listen(last: str | None = None, want: int = 3) -> None:
        with ExchangeClient(gateway.url, s.subscriber.client_id, s.subscriber._secret) as c:
            for ev in c.stream(sub, last_event_id=last, timeout=15):
                if ev.get("event") == "record":
                    events.append(ev)
                if len(events) >= want:
                    return

    t = threading.Thread(target=listen)
    t.start()
    time.sleep(1.0)  # let the stream attach to the live feed before publishing
    s.publisher.publish(s.topic, [{"key": "x", "value": person(i)} for i in range(3)])
    t.join(timeout=20)
    assert [e["data"]["value"]["name"] for e in events] == [f"Resident {i}" for i in range(3)]
    assert set(events[0]["data"]["value"]) == {"name"}

    # Resume after the first event: the next two come again, nothing lost.
    resume_from = events[0]["id"]
    events.clear()
    listen(resume_from, want=2)
    assert [e["data"]["value"]["name"] for e in events] == ["Resident 1", "Resident 2"]


def test_avro_wire_format_publish(scenario: Scenario) -> None:
    import io
    import json as _json
    import struct

    import fastavro

    from tests.support.scenario import PERSON_SCHEMA

    s = scenario
    version = s.publisher.call("GET", f"/registry/subjects/{s.subject}/versions/latest")
    parsed = fastavro.parse_schema(_json.loads(_json.dumps(PERSON_SCHEMA)))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, person(7))
    value = b"\x00" + version["id"].to_bytes(4, "big") + buf.getvalue()
    frame = struct.pack(">I", 2) + b"k7" + struct.pack(">I", len(value)) + value
    r = s.publisher.request(
        "POST",
        f"/v1/topics/{s.topic}/records",
        content=frame,
        headers={"Content-Type": "application/vnd.exchange.avro"},
    )
    assert r.status_code == 200, r.text
    grant(s, ["name", "citizen_id"])
    sub = s.subscriber.subscribe(s.topic)
    got = pull(s.subscriber, sub, 1)
    assert got[0]["value"] == {"name": "Resident 7", "citizen_id": person(7)["citizen_id"]}
    assert got[0]["key"] == "k7"


def test_non_finite_doubles_from_a_framed_publish_are_delivered_as_strings(
    scenario: Scenario,
) -> None:
    """A JSON publish cannot carry NaN or infinities, an Avro-framed one can: the page must
    still be delivered (it was a 500 before, stopping the subscription there), as the strings
    protobuf's JSON mapping writes, not as null; the sealed ``income`` is opened first."""
    from tests.support.avro_publish import publish_avro
    from tests.support.scenario import PERSON_SCHEMA

    s = scenario
    odd = [float("nan"), float("inf"), float("-inf"), 2.5]
    records = [(f"n{i}", {**person(i), "income": x}) for i, x in enumerate(odd)]
    publish_avro(s.publisher, s.topic, s.subject, PERSON_SCHEMA, records)
    grant(s, ["name", "income"])
    sub = s.subscriber.subscribe(s.topic)
    got = {r["key"]: r["value"] for r in pull(s.subscriber, sub, len(odd))}
    assert got == {
        "n0": {"name": "Resident 0", "income": "NaN"},
        "n1": {"name": "Resident 1", "income": "Infinity"},
        "n2": {"name": "Resident 2", "income": "-Infinity"},
        "n3": {"name": "Resident 3", "income": 2.5},
    }


def test_not_shared_topic_cannot_be_subscribed(
    gateway: ThreadGateway, admin: ExchangeClient
) -> None:
    tag = str(time.time_ns())[-6:]
    s = build(admin, gateway.url, share_type="unconditional")
    admin.call(
        "POST",
        "/v1/topics",
        json={
            "name": f"{s.owner}.sealed-{tag}",
            "owner": s.owner,
            "partitions": 1,
            "value_subject": s.subject,
            "share_type": "not_shared",
            "legal_basis": "State secrets law",
        },
    )
    with pytest.raises(ApiError) as exc:
        s.subscriber.subscribe(f"{s.owner}.sealed-{tag}")
    assert exc.value.status == 403
    s.close()


def test_health_endpoints(gateway: ThreadGateway) -> None:
    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{gateway.url}/readyz").json()["kafka"] == "up"


def test_sensitive_field_typed_by_a_named_reference(
    gateway: ThreadGateway, admin: ExchangeClient
) -> None:
    schema = {
        "type": "record",
        "name": "Move",
        "namespace": "gov.civil",
        "fields": [
            {"name": "name", "type": "string", "classification": "public"},
            {
                "name": "origin",
                "type": {
                    "type": "record",
                    "name": "Place",
                    "fields": [{"name": "city", "type": "string"}],
                },
            },
            {"name": "destination", "type": "Place", "classification": "sensitive"},
        ],
    }
    s = build(admin, gateway.url, schema=schema)
    value = {"name": "Li", "origin": {"city": "Ningbo"}, "destination": {"city": "Wenzhou"}}
    s.publisher.publish(s.topic, [{"value": value}])
    grant(s, ["name", "destination"])
    sub = s.subscriber.subscribe(s.topic)
    [rec] = pull(s.subscriber, sub, 1)
    assert rec["value"] == {"name": "Li", "destination": {"city": "Wenzhou"}}
    s.close()


def test_openapi_documents_both_publish_bodies(gateway: ThreadGateway) -> None:
    spec = httpx.get(f"{gateway.url}/openapi.json").json()
    body = spec["paths"]["/v1/topics/{topic}/records"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "application/vnd.exchange.avro"}
    record = body["application/json"]["schema"]["properties"]["records"]["items"]
    assert {"key", "value", "headers"} <= set(record["properties"])


def test_streams_sharing_a_render_group_each_get_everything_once(
    scenario: Scenario, gateway: ThreadGateway
) -> None:
    s = scenario
    grant(s, ["name"])
    subs = [s.subscriber.subscribe(s.topic, start="latest") for _ in range(2)]
    got: dict[str, list[str]] = {sub: [] for sub in subs}

    def listen(sub: str) -> None:
        with ExchangeClient(gateway.url, s.subscriber.client_id, s.subscriber._secret) as c:
            for ev in c.stream(sub, timeout=20):
                if ev.get("event") == "record":
                    got[sub].append(ev["data"]["value"]["name"])
                if len(got[sub]) >= 6:
                    return

    first = threading.Thread(target=listen, args=(subs[0],))
    first.start()
    time.sleep(1.0)
    s.publisher.publish(s.topic, [{"value": person(i)} for i in range(3)])
    time.sleep(0.5)
    second = threading.Thread(target=listen, args=(subs[1],))  # joins the live group late
    second.start()
    time.sleep(1.0)
    s.publisher.publish(s.topic, [{"value": person(i)} for i in range(3, 6)])
    first.join(timeout=20)
    second.join(timeout=20)
    expected = [f"Resident {i}" for i in range(6)]
    # Exactly once each (Kafka orders within a partition only, and the topic has two).
    assert sorted(got[subs[0]]) == expected
    assert sorted(got[subs[1]]) == expected


class _SwitchableAudits(MemoryAuditSink):
    """An audit sink that refuses "record.published" while ``down``, like a log outage."""

    down = False

    def append(self, record: AuditRecord) -> None:
        if self.down and record.type == "record.published":
            raise DependencyUnavailable("audit log unavailable")
        super().append(record)

    def append_many(self, records: Sequence[AuditRecord]) -> None:
        for r in records:
            self.append(r)


def test_audit_outage_at_publish_aborts_the_transaction(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    audits = _SwitchableAudits()
    gw = ThreadGateway(tmp_path / "gw", kafka_bootstrap, audit=audits).start()
    try:
        with gw.admin() as admin:
            s = build(admin, gw.url)
            audits.down = True
            r = s.publisher.request(
                "POST", f"/v1/topics/{s.topic}/records", json={"records": [{"value": person(1)}]}
            )
            audits.down = False
            assert r.status_code == 503
            assert not [e for e in audits.records if e.type == "record.published"]
            s.publisher.publish(s.topic, [{"value": person(2)}])  # the log is back
            grant(s, ["name"])
            sub = s.subscriber.subscribe(s.topic)
            names = [rec["value"]["name"] for rec in pull(s.subscriber, sub, 2, timeout=4)]
            assert names == ["Resident 2"]  # the unaudited batch never became visible
            s.close()
    finally:
        gw.stop()


def test_seek_replays_from_earliest_after_everything_was_committed(scenario: Scenario) -> None:
    s = scenario
    s.publisher.publish(s.topic, [{"key": "r", "value": person(i)} for i in range(3)])
    grant(s, ["name"])
    sub = s.subscriber.subscribe(s.topic)
    assert len(pull(s.subscriber, sub, 3)) == 3
    assert s.subscriber.poll(sub, wait_ms=200)["records"] == []
    s.subscriber.call("POST", f"/v1/subscriptions/{sub}/seek", json={"start": "earliest"})
    again = pull(s.subscriber, sub, 3)
    assert [r["value"]["name"] for r in again] == [f"Resident {i}" for i in range(3)]


def test_concurrent_publishes_are_answered_and_audited_each_on_their_own(
    scenario: Scenario, gateway: ThreadGateway
) -> None:
    """Concurrent requests share group commits: each is answered with its own offsets and
    audited with its own event; an invalid one fails alone with 422."""
    s = scenario
    bad = {**person(99), "income": "lots"}

    def publish(i: int) -> httpx.Response:
        value = bad if i == 5 else person(i)
        return s.publisher.request(
            "POST", f"/v1/topics/{s.topic}/records", json={"records": [{"value": value}] * 2}
        )

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(publish, range(16)))
    assert answers[5].status_code == 422
    ok = [r.json() for i, r in enumerate(answers) if i != 5]
    assert all(r.status_code == 200 for i, r in enumerate(answers) if i != 5)
    answered = [(o["partition"], o["offset"]) for a in ok for o in a["offsets"]]
    assert len(answered) == len(set(answered)) == 30
    events = gateway.services.audit_review.query(
        Filters(topic=s.topic, type="record.published"), limit=100
    )
    assert len(events) == 15 and all(e.data["count"] == 2 for e in events)
    grant(s, ["name"])
    sub = s.subscriber.subscribe(s.topic)
    assert len(pull(s.subscriber, sub, 30)) == 30

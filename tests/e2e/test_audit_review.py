"""The officer's review over HTTP after a full publish → subscribe scenario.

The auditor retrieves every event of the scenario, checks an inclusion proof offline against
a signed checkpoint (only the exported lines and the verifier key from the gateway's home),
checks consistency between two checkpoints, and finds who accessed one data subject.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from audit.checkpoint import Verifier, open_note
from audit.keys import VERIFIER_FILE
from audit.merkle import hasher, verify_consistency, verify_inclusion
from audit.offline import verify_exported
from exchange.client import ApiError, ExchangeClient
from tests.support.gateway import ThreadGateway
from tests.support.scenario import build, grant, new_client, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


def events(auditor: ExchangeClient, **params: Any) -> list[dict[str, Any]]:
    """Every matching event, following the paging cursor."""
    out: list[dict[str, Any]] = []
    after = -1
    while True:
        page = auditor.call(
            "GET", "/v1/audit/events", params={**params, "after": after, "limit": 50}
        )
        out += [row["event"] for row in page["events"]]
        if page["next"] is None:
            return out
        after = page["next"]


def test_publish_subscribe_then_officer_review(
    gateway: ThreadGateway, admin: ExchangeClient, security_officer: ExchangeClient
) -> None:
    s = build(admin, gateway.url)
    office = f"audit-office-{uuid.uuid4().hex[:6]}"
    admin.call("POST", "/v1/departments", json={"id": office, "name": "Audit", "level": "city"})
    auditor = new_client(security_officer, gateway.url, office, ["auditor"])
    grant(s, ["name", "citizen_id"])
    s.publisher.publish(s.topic, [{"key": f"k{i}", "value": person(i)} for i in range(5)])
    sub = s.subscriber.subscribe(s.topic)
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while len(got) < 5 and time.monotonic() < deadline:
        page = s.subscriber.poll(sub, wait_ms=500)
        got += page["records"]
        if page["records"]:
            s.subscriber.commit(sub, page["cursor"])
    assert len(got) == 5

    # Every step of the scenario is in the log.
    of_topic = events(auditor, topic=s.topic)
    types = {e["type"] for e in of_topic}
    assert {"record.published", "records.delivered"} <= types, types
    published = next(e for e in of_topic if e["type"] == "record.published")
    assert published["actor"] == s.publisher.client_id and published["data"]["count"] == 5
    delivered = [e for e in of_topic if e["type"] == "records.delivered"]
    assert sum(e["data"]["count"] for e in delivered) == 5
    assert all(e["data"]["agreement"] for e in delivered)
    assert {"citizen_id", "name"} <= set(delivered[0]["data"]["fields"])
    of_owner = events(auditor, department=s.owner)
    assert any(e["type"] == "token.issued" for e in of_owner)
    assert any(e["type"].startswith("admin.") for e in events(auditor, client="exchange-admin"))

    # Who accessed subject X: raw id in, keyed hash matched server-side, never stored raw.
    x = person(3)["citizen_id"]
    touched = events(auditor, subject=x)
    actors = {(e["type"], e["actor"]) for e in touched}
    assert ("record.published", s.publisher.client_id) in actors
    assert ("records.delivered", s.subscriber.client_id) in actors
    assert all(x not in json.dumps(e) for e in touched)
    # The officer's search is itself an access to X: it is logged (hashed) and shows up.
    assert ("audit.read", auditor.client_id) in actors
    nobody = events(auditor, subject="no-such-person-" + uuid.uuid4().hex)
    assert {(e["type"], e["actor"]) for e in nobody} == {("audit.read", auditor.client_id)}

    # Offline: the JSONL export plus the verifier key from the gateway's home is enough.
    r = auditor.request("GET", "/v1/audit/events", params={"topic": s.topic, "format": "jsonl"})
    assert r.status_code == 200
    head, *lines = [json.loads(line) for line in r.text.splitlines()]
    key = (gateway.home / VERIFIER_FILE).read_text().strip()
    assert head["verifier_key"] == key
    assert len(lines) == len(of_topic)
    for line in lines:
        assert verify_exported(
            line["entry"], line["event"]["index"], line["proof"], head["checkpoint"], key
        )
    pub = next(x for x in lines if x["event"]["type"] == "record.published")
    forged = pub["entry"].replace('"count":5', '"count":4')
    assert forged != pub["entry"]
    index = pub["event"]["index"]
    assert not verify_exported(forged, index, pub["proof"], head["checkpoint"], key)

    # CSV export carries the same proofs and the checkpoint in a header.
    r = auditor.request("GET", "/v1/audit/events", params={"topic": s.topic, "format": "csv"})
    assert r.status_code == 200 and r.text.startswith("index,ts,type")
    assert len(r.text.strip().splitlines()) == len(of_topic) + 1

    # Inclusion and consistency proofs from the routes, checked against signed checkpoints.
    verifier = Verifier.parse(key)
    first = auditor.call("GET", "/v1/audit/checkpoint", params={"fresh": True})
    cp1 = open_note(first["checkpoint"], verifier)
    h = hasher(cp1.hash)
    idx = published["index"]
    proof = auditor.call(
        "GET", "/v1/audit/proofs/inclusion", params={"index": idx, "size": cp1.size}
    )
    assert verify_inclusion(
        h,
        idx,
        cp1.size,
        bytes.fromhex(proof["leaf_hash"]),
        [bytes.fromhex(p) for p in proof["proof"]],
        cp1.root,
    )
    s.publisher.publish(s.topic, [{"value": person(9)}])
    second = auditor.call("GET", "/v1/audit/checkpoint", params={"fresh": True})
    cp2 = open_note(second["checkpoint"], verifier)
    assert cp2.size > cp1.size
    c = auditor.call(
        "GET", "/v1/audit/proofs/consistency", params={"from": cp1.size, "to": cp2.size}
    )
    assert verify_consistency(
        h, cp1.size, cp2.size, [bytes.fromhex(p) for p in c["proof"]], cp1.root, cp2.root
    )

    # The whole log so far verifies from the index and from the Kafka topic.
    service = gateway.services.audit_review
    for source in ("db", "kafka"):
        report = service.verify(source)
        assert report.ok and report.size >= cp2.size and report.checkpoints >= 2, report.line()

    # The officer's own reads are audited too; the subject they asked about only as a hash.
    reads = events(auditor, type="audit.read", client=auditor.client_id)
    assert {r["data"]["what"] for r in reads} >= {"events", "checkpoint", "inclusion_proof"}
    assert all(x not in json.dumps(r) for r in reads)
    s.close()


def test_only_auditors_may_read_and_refusals_are_audited(
    gateway: ThreadGateway, admin: ExchangeClient, security_officer: ExchangeClient
) -> None:
    for path in ("/v1/audit/events", "/v1/audit/checkpoint"):
        with pytest.raises(ApiError) as err:
            admin.call("GET", path)
        assert err.value.status == 403
    r = admin.http.get("/v1/audit/events")
    assert r.status_code == 401
    office = f"audit-office-{uuid.uuid4().hex[:6]}"
    admin.call("POST", "/v1/departments", json={"id": office, "name": "Audit", "level": "city"})
    auditor = new_client(security_officer, gateway.url, office, ["auditor"])
    denied = events(auditor, type="authz.denied", client=admin.client_id)
    paths = {(e["data"]["path"], e["outcome"]) for e in denied}
    assert {("/v1/audit/events", "denied"), ("/v1/audit/checkpoint", "denied")} <= paths
    auditor.close()

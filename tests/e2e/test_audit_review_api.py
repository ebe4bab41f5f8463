"""The officer's console API over HTTP: filters (type prefix, denied only), event detail with
its proof, subject search by body, checkpoint history, activity series — and bad input
answered 4xx (never 500), admins refused, every read itself audited."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from audit.checkpoint import Verifier, open_note
from audit.keys import VERIFIER_FILE
from audit.merkle import hasher, verify_consistency
from audit.offline import verify_exported
from exchange.client import ExchangeClient
from tests.support.gateway import ThreadGateway
from tests.support.scenario import Scenario, build, grant, new_client, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@pytest.fixture(scope="module")
def world(
    gateway: ThreadGateway, admin: ExchangeClient, security_officer: ExchangeClient
) -> Iterator[tuple[Scenario, ExchangeClient]]:
    s = build(admin, gateway.url)
    office = f"audit-office-{uuid.uuid4().hex[:6]}"
    admin.call("POST", "/v1/departments", json={"id": office, "name": "Audit", "level": "city"})
    auditor = new_client(security_officer, gateway.url, office, ["auditor"])
    grant(s, ["name", "citizen_id"])
    s.publisher.publish(s.topic, [{"key": f"k{i}", "value": person(i)} for i in range(3)])
    r = s.subscriber.request("GET", "/v1/audit/events")  # a refusal, for "denied only"
    assert r.status_code == 403
    yield s, auditor
    auditor.close()
    s.close()


def _events(auditor: ExchangeClient, **params: Any) -> list[dict[str, Any]]:
    page = auditor.call("GET", "/v1/audit/events", params={"limit": 1000, **params})
    return [row["event"] for row in page["events"]]


def test_type_prefix_and_denied_only(world: tuple[Scenario, ExchangeClient]) -> None:
    s, auditor = world
    schema = _events(auditor, type="schema.*", client=s.publisher.client_id)
    assert schema and all(e["type"].startswith("schema.") for e in schema)
    assert "schema.registered" in {e["type"] for e in schema}
    denied = _events(auditor, outcome="denied", department=s.consumer)
    assert denied and all(e["outcome"] == "denied" for e in denied)
    assert any(e["type"] == "authz.denied" and e["actor"] == s.subscriber.client_id for e in denied)
    everything = _events(auditor, type="*", department=s.consumer)
    assert len(everything) > len(denied)


def test_event_detail_carries_a_proof_that_verifies_offline(
    gateway: ThreadGateway, world: tuple[Scenario, ExchangeClient]
) -> None:
    s, auditor = world
    pub = next(e for e in _events(auditor, topic=s.topic) if e["type"] == "record.published")
    d = auditor.call("GET", f"/v1/audit/events/{pub['index']}")
    key = (gateway.home / VERIFIER_FILE).read_text().strip()
    assert d["event"] == pub and d["verifier_key"] == key
    assert verify_exported(d["entry"], pub["index"], d["proof"], d["checkpoint"], key)
    assert open_note(d["checkpoint"], Verifier.parse(key)).size == d["tree_size"]
    r = auditor.request("GET", "/v1/audit/events/999999999")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_subject_search_takes_the_raw_id_in_the_body(
    world: tuple[Scenario, ExchangeClient],
) -> None:
    s, auditor = world
    x = person(1)["citizen_id"]
    page = auditor.call("POST", "/v1/audit/subjects/search", json={"subject": x})
    touched = {(row["event"]["type"], row["event"]["actor"]) for row in page["events"]}
    assert ("record.published", s.publisher.client_id) in touched
    assert ("audit.read", auditor.client_id) in touched  # the search itself, hashed
    assert x not in json.dumps(page)
    for row in page["events"]:
        assert verify_exported(
            row["entry"],
            row["event"]["index"],
            row["proof"],
            page["checkpoint"],
            page["verifier_key"],
        )
    r = auditor.request("POST", "/v1/audit/subjects/search", json={"subject": x, "format": "jsonl"})
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    head, *lines = [json.loads(line) for line in r.text.splitlines()]
    assert head["checkpoint"] and len(lines) >= 2


def test_checkpoint_history_is_consistent_and_pages(
    world: tuple[Scenario, ExchangeClient],
) -> None:
    s, auditor = world
    auditor.call("GET", "/v1/audit/checkpoint", params={"fresh": True})
    s.publisher.publish(s.topic, [{"value": person(7)}])
    auditor.call("GET", "/v1/audit/checkpoint", params={"fresh": True})
    page = auditor.call("GET", "/v1/audit/checkpoints", params={"limit": 2})
    first, second = page["checkpoints"]
    assert first["size"] > second["size"] and first["previous"] == second["size"]
    assert first["status"] == "consistent" and page["next"] == second["size"]
    v = Verifier.parse(page["verifier_key"])
    a, b = open_note(second["checkpoint"], v), open_note(first["checkpoint"], v)
    proof = [bytes.fromhex(p) for p in first["proof"]]
    assert verify_consistency(hasher(page["hash"]), a.size, b.size, proof, a.root, b.root)
    rest = auditor.call("GET", "/v1/audit/checkpoints", params={"before": page["next"]})
    assert all(c["size"] < second["size"] for c in rest["checkpoints"])
    assert rest["checkpoints"][-1]["status"] == "first"


def test_activity_counts_events_and_denials_per_department(
    world: tuple[Scenario, ExchangeClient],
) -> None:
    s, auditor = world
    a = auditor.call("GET", "/v1/audit/activity", params={"bucket": "minute"})
    assert len(a["buckets"]) >= 24 * 60
    by = {x["department"]: x for x in a["series"]}
    assert sum(by[s.owner]["events"]) >= 3
    assert sum(by[s.consumer]["denied"]) >= 1
    assert a["totals"]["events"] >= sum(by[s.owner]["events"])
    one = auditor.call("GET", "/v1/audit/activity", params={"department": s.consumer})
    assert [x["department"] for x in one["series"]] == [s.consumer]


BAD: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/audit/events", {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}),
    ("GET", "/v1/audit/events", {"from": "yesterday"}),
    ("GET", "/v1/audit/events", {"from": "9999-12-31T23:59:59-23:59"}),
    ("GET", "/v1/audit/events", {"type": "schema*"}),
    ("GET", "/v1/audit/events", {"outcome": "maybe"}),
    ("GET", "/v1/audit/events", {"departmnet": "typo"}),
    ("GET", "/v1/audit/events", {"limit": 0}),
    ("GET", "/v1/audit/events", {"after": "x"}),
    ("GET", "/v1/audit/events", {"format": "xml"}),
    ("GET", "/v1/audit/events/-1", {}),
    ("GET", "/v1/audit/events/abc", {}),
    ("GET", "/v1/audit/events/99999999999999999999999", {}),
    ("GET", "/v1/audit/events/1", {"x": "1"}),
    ("GET", "/v1/audit/checkpoints", {"limit": 5000}),
    ("GET", "/v1/audit/checkpoints", {"page": 2}),
    ("GET", "/v1/audit/activity", {"bucket": "week"}),
    ("GET", "/v1/audit/activity", {"from": "2020-01-01T00:00:00Z", "bucket": "minute"}),
    ("GET", "/v1/audit/activity", {"from": "2030-01-01T00:00:00Z"}),
    ("GET", "/v1/audit/activity", {"from": "0001-01-01T00:00:00+01:00"}),
    ("GET", "/v1/audit/activity", {"departments": "x"}),
    ("POST", "/v1/audit/subjects/search", {}),
    ("POST", "/v1/audit/subjects/search", {"subject": ""}),
    ("POST", "/v1/audit/subjects/search", {"subject": "x", "extra": 1}),
    ("POST", "/v1/audit/subjects/search", {"subject": "x", "limit": -1}),
]


@pytest.mark.parametrize(("method", "path", "params"), BAD)
def test_bad_input_is_a_4xx(
    world: tuple[Scenario, ExchangeClient], method: str, path: str, params: dict[str, Any]
) -> None:
    _, auditor = world
    if method == "POST":
        r = auditor.request(method, path, json=params)
    else:
        r = auditor.request(method, path, params=params)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")


def test_admin_is_refused_and_reads_are_audited(
    admin: ExchangeClient, world: tuple[Scenario, ExchangeClient]
) -> None:
    _, auditor = world
    for method, path in (
        ("GET", "/v1/audit/events/0"),
        ("GET", "/v1/audit/checkpoints"),
        ("GET", "/v1/audit/activity"),
        ("POST", "/v1/audit/subjects/search"),
    ):
        r = admin.request(method, path, json={"subject": "x"} if method == "POST" else None)
        assert r.status_code == 403, (path, r.status_code)
    reads = _events(auditor, type="audit.read", client=auditor.client_id)
    assert {"event", "subject_search", "checkpoints", "activity"} <= {
        r["data"]["what"] for r in reads
    }

"""Edges of the resource API (issue 12 item 16): unknown things are 404, not 200 or 503;
Kafka's topic-name collisions are 409; every timestamp carries an offset."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from exchange.client import ExchangeClient
from tests.support.gateway import ThreadGateway
from tests.support.scenario import Scenario, build, grant, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")


@pytest.fixture(scope="module")
def s(gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[Scenario]:
    scenario = build(admin, gateway.url)
    grant(scenario, ["name"])
    scenario.publisher.publish(scenario.topic, [{"key": "a", "value": person(1)}])  # makes DEKs
    yield scenario
    scenario.close()


def key_states(admin: ExchangeClient, topic: str) -> list[tuple[str, int, str]]:
    keys = admin.call("GET", "/v1/keys", params={"topic": topic})
    return sorted((k["field"], k["version"], k["state"]) for k in keys)


def test_shredding_or_rotating_an_unknown_field_is_404_and_changes_nothing(
    s: Scenario, admin: ExchangeClient
) -> None:
    before = key_states(admin, s.topic)
    assert before, "the publish should have created data keys"
    for path in ("/v1/keys/shred", "/v1/keys/rotate"):
        r = admin.request("POST", path, json={"topic": s.topic, "field": "no_such_field"})
        assert r.status_code == 404, r.text
        assert "no_such_field" in r.json()["detail"]
    assert key_states(admin, s.topic) == before


def test_kek_rotation_of_an_unknown_department_is_404(s: Scenario, admin: ExchangeClient) -> None:
    r = admin.request("POST", "/v1/kms/keks/no-such-dept/rotate")
    assert r.status_code == 404, r.text
    r = admin.request("POST", f"/v1/kms/keks/{s.consumer}/rotate")  # exists, has no KEK yet
    assert r.status_code == 404, r.text
    ok = admin.call("POST", f"/v1/kms/keks/{s.owner}/rotate")
    assert ok["rewrapped"] >= 1


def _topic(admin: ExchangeClient, owner: str, name: str) -> Any:
    return admin.request(
        "POST",
        "/v1/topics",
        json={"name": name, "owner": owner, "value_subject": f"{name}-value", "partitions": 1},
    )


@pytest.mark.parametrize(("first", "second"), [("x_y", "x.y"), ("a.b.c", "a_b_c")])
def test_kafka_name_collision_is_409_naming_the_clash(
    s: Scenario, admin: ExchangeClient, gateway: ThreadGateway, first: str, second: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    one, two = f"{s.owner}.{tag}{first}", f"{s.owner}.{tag}{second}"
    assert _topic(admin, s.owner, one).status_code == 201
    r = _topic(admin, s.owner, two)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "topic_name_clash"
    assert r.json()["clashes_with"] == one and one in r.json()["detail"]
    assert admin.request("GET", f"/v1/catalog/{two}").status_code == 404
    assert two not in gateway.services.kafka.list_topics()


def test_kafka_only_topic_also_clashes(
    s: Scenario, admin: ExchangeClient, gateway: ThreadGateway
) -> None:
    """A topic in Kafka but not in the catalog (made by another tool) is a clash too."""
    tag = uuid.uuid4().hex[:6]
    gateway.services.kafka.create_topic(f"{s.owner}.{tag}k_only", 1)
    r = _topic(admin, s.owner, f"{s.owner}.{tag}k.only")
    assert r.status_code == 409 and r.json()["clashes_with"] == f"{s.owner}.{tag}k_only"


def _stamps(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for v in node.values():
            yield from _stamps(v)
    elif isinstance(node, list):
        for v in node:
            yield from _stamps(v)
    elif isinstance(node, str) and _STAMP.match(node):
        yield node


def test_every_timestamp_the_api_returns_has_an_offset(s: Scenario, admin: ExchangeClient) -> None:
    answers = [
        admin.call("GET", f"/v1/catalog/{s.topic}"),
        admin.call("GET", "/v1/catalog"),
        admin.call("GET", "/v1/keys", params={"topic": s.topic}),
        admin.call("GET", f"/v1/departments/{s.owner}/clients"),
        s.subscriber.call("GET", "/v1/agreements"),
    ]
    stamps = [t for a in answers for t in _stamps(a)]
    assert any(t for t in stamps)
    naive = [t for t in stamps if datetime.fromisoformat(t).utcoffset() is None]
    assert naive == []
    created = admin.call("GET", f"/v1/catalog/{s.topic}")["created_at"]
    assert created.endswith(("Z", "+00:00"))


def test_a_clash_that_appears_after_the_check_is_still_409(
    s: Scenario, admin: ExchangeClient, gateway: ThreadGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another tool creates the clashing topic between our check and Kafka's create."""
    tag = uuid.uuid4().hex[:6]
    kafka = gateway.services.kafka
    kafka.create_topic(f"{s.owner}.{tag}r_ace", 1)
    real, calls = kafka.list_topics, []

    def blind_once() -> list[str]:
        calls.append(1)
        return [] if len(calls) == 1 else real()

    monkeypatch.setattr(kafka, "list_topics", blind_once)
    r = _topic(admin, s.owner, f"{s.owner}.{tag}r.ace")
    assert r.status_code == 409, r.text
    assert r.json()["clashes_with"] == f"{s.owner}.{tag}r_ace"
    assert admin.request("GET", f"/v1/catalog/{s.owner}.{tag}r.ace").status_code == 404

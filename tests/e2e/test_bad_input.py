"""Hostile input answers 4xx with a clear message and writes nothing (issue 12 items 8, 13, 16).

Each refusal asserts the status and that nothing was written: no Kafka record (the topic's
end offsets, which also move for an aborted transaction, are unchanged), no row.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from exchange.client import ExchangeClient
from tests.support.gateway import ThreadGateway
from tests.support.scenario import Scenario, build, grant, new_client, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

NODE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Node",
    "fields": [
        {"name": "v", "type": "int"},
        {"name": "next", "type": ["null", "Node"], "default": None},
    ],
}


@pytest.fixture(scope="module")
def s(gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[Scenario]:
    scenario = build(admin, gateway.url)
    grant(scenario, ["name"])
    yield scenario
    scenario.close()


def ends(gw: ThreadGateway, topic: str) -> dict[int, int]:
    return dict(gw.services.readers.end_offsets(topic))


def raw_publish(s: Scenario, body: bytes) -> httpx.Response:
    return s.publisher.request(
        "POST",
        f"/v1/topics/{s.topic}/records",
        content=body,
        headers={"Content-Type": "application/json"},
    )


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def test_deep_json_on_publish_is_422_and_nothing_is_published(
    s: Scenario, gateway: ThreadGateway
) -> None:
    before = ends(gateway, s.topic)
    for depth in (65, 999, 1_000, 50_000):
        body = '{"records":[{"key":"a","value":' + nested(depth) + "}]}"
        r = raw_publish(s, body.encode())
        assert r.status_code == 422, (depth, r.text)
        assert r.json()["code"] == "json_too_deep"
        assert "nested more than" in r.json()["detail"]
    assert ends(gateway, s.topic) == before


def test_deep_json_on_other_routes_is_422_and_nothing_is_created(
    s: Scenario, gateway: ThreadGateway, admin: ExchangeClient
) -> None:
    deep = nested(5_000).encode()
    for method, path, who in (
        ("POST", "/v1/departments", admin),
        ("POST", "/v1/agreements", s.subscriber),
        ("POST", "/v1/subscriptions", s.subscriber),
        ("PUT", f"/registry/config/{s.subject}", s.publisher),
    ):
        r = who.request(method, path, content=deep, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (path, r.text)
    assert s.subscriber.call("GET", "/v1/subscriptions") == []


def test_registry_answers_deep_json_in_its_own_format(s: Scenario) -> None:
    versions = s.publisher.call("GET", f"/registry/subjects/{s.subject}/versions")
    body = ('{"schema":' + "[" * 5_000 + "]" * 5_000 + "}").encode()
    r = s.publisher.request(
        "POST",
        f"/registry/subjects/{s.subject}/versions",
        content=body,
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    assert r.status_code == 422 and r.json()["error_code"] == 422
    assert "nested" in r.json()["message"]
    # the schema text itself nested deeply: an invalid schema, not a crash
    schema = "[" * 5_000 + '"int"' + "]" * 5_000
    r = s.publisher.request(
        "POST", f"/registry/subjects/{s.subject}/versions", json={"schema": schema}
    )
    assert r.status_code == 422, r.text
    assert s.publisher.call("GET", f"/registry/subjects/{s.subject}/versions") == versions


@pytest.mark.parametrize(
    "record",
    [
        b'{"key":"\\ud800","value":VALUE}',
        b'{"key":"a","value":VALUE,"headers":{"h":"\\udfff"}}',
        b'{"key":"a","value":VALUE_SURROGATE}',
    ],
)
def test_lone_surrogates_are_422_and_nothing_is_published(
    s: Scenario, gateway: ThreadGateway, record: bytes
) -> None:
    value = json.dumps(person(1)).encode()
    bad_value = value.replace(b'"Resident 1"', b'"Resident \\ud800"')
    body = record.replace(b"VALUE_SURROGATE", bad_value).replace(b"VALUE", value)
    before = ends(gateway, s.topic)
    r = raw_publish(s, b'{"records":[' + body + b"]}")
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_unicode"
    assert ends(gateway, s.topic) == before


@pytest.mark.parametrize("number", [b"1e999", b"NaN", b"-Infinity"])
def test_numbers_that_are_not_finite_are_422_and_nothing_is_published(
    s: Scenario, gateway: ThreadGateway, number: bytes
) -> None:
    value = json.dumps(person(1)).encode().replace(b"1001.5", number)
    assert number in value
    before = ends(gateway, s.topic)
    r = raw_publish(s, b'{"records":[{"key":"a","value":' + value + b"}]}")
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_number"
    assert ends(gateway, s.topic) == before


def test_lone_surrogate_in_a_control_plane_string_is_422(admin: ExchangeClient) -> None:
    r = admin.request(
        "POST",
        "/v1/departments",
        content=b'{"id":"surrogate-dept","name":"\\ud800","level":"city"}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_unicode"
    assert admin.request("GET", "/v1/departments/surrogate-dept").status_code == 404


@pytest.mark.parametrize("version", [-1, 0, True, False, 1.5, "2", None])
def test_schema_version_must_be_a_positive_integer(
    s: Scenario, gateway: ThreadGateway, version: Any
) -> None:
    before = ends(gateway, s.topic)
    body = {"records": [{"key": "a", "value": person(1)}], "schema_version": version}
    r = s.publisher.request("POST", f"/v1/topics/{s.topic}/records", json=body)
    assert r.status_code == 422, (version, r.text)
    assert ends(gateway, s.topic) == before


@pytest.mark.parametrize(
    "start", ["1960-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00", "x"]
)
def test_start_before_1970_or_unparseable_is_422(s: Scenario, start: str) -> None:
    r = s.subscriber.request("POST", "/v1/subscriptions", json={"topic": s.topic, "start": start})
    assert r.status_code == 422, r.text
    assert "start" in r.json()["detail"]
    assert s.subscriber.call("GET", "/v1/subscriptions") == []


def test_seek_before_1970_is_422_and_the_cursor_stays(s: Scenario) -> None:
    sub = s.subscriber.call("POST", "/v1/subscriptions", json={"topic": s.topic})
    try:
        for start in ("1960-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00"):
            r = s.subscriber.request(
                "POST", f"/v1/subscriptions/{sub['id']}/seek", json={"start": start}
            )
            assert r.status_code == 422, r.text
        after = s.subscriber.call("GET", f"/v1/subscriptions/{sub['id']}")
        assert after["cursor"] == sub["cursor"]
        far = s.subscriber.request(
            "POST", f"/v1/subscriptions/{sub['id']}/seek", json={"start": "9999-12-31T23:59:59Z"}
        )
        assert far.status_code == 200  # the far future is simply "the end"
    finally:
        s.subscriber.call("DELETE", f"/v1/subscriptions/{sub['id']}")


def test_json_publish_to_a_self_recursive_schema(
    gateway: ThreadGateway, admin: ExchangeClient
) -> None:
    r = build(admin, gateway.url, schema=NODE_SCHEMA)
    try:

        def chain(n: int) -> dict[str, Any]:
            node: dict[str, Any] = {"v": n, "next": None}
            for i in range(n):
                node = {"v": i, "next": node}
            return node

        ok = r.publisher.request(
            "POST",
            f"/v1/topics/{r.topic}/records",
            json={"records": [{"key": "a", "value": chain(20)}]},
        )
        assert ok.status_code == 200, ok.text
        before = ends(gateway, r.topic)
        for n in (200, 900):
            body = json.dumps({"records": [{"key": "a", "value": chain(n)}]}).encode()
            bad = r.publisher.request(
                "POST",
                f"/v1/topics/{r.topic}/records",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            assert bad.status_code == 422, bad.text
        assert ends(gateway, r.topic) == before
    finally:
        r.close()


def test_every_non_publish_route_has_a_body_limit(
    s: Scenario, gateway: ThreadGateway, admin: ExchangeClient
) -> None:
    limit = gateway.settings.max_request_bytes
    big = b'{"id":"' + b"a" * (limit + 10) + b'"}'

    def streamed() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for i in range(0, len(big), 64 * 1024):
            yield big[i : i + 64 * 1024]

    for content in (big, streamed()):
        r = admin.request(
            "POST", "/v1/departments", content=content, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 413, r.text
        assert r.json()["code"] == "payload_too_large"
    r = s.publisher.request("POST", f"/registry/subjects/{s.subject}/versions", content=big)
    assert r.status_code == 413 and r.json()["error_code"] == 41301
    # publish keeps its own, larger limit
    batch = {"records": [{"key": f"k{i}", "value": person(i)} for i in range(6_000)]}
    body = json.dumps(batch).encode()
    assert limit < len(body) < gateway.settings.max_body_bytes
    r = raw_publish(s, body)
    assert r.status_code == 413 and r.json()["code"] == "batch_too_large"  # not the byte limit


@pytest.mark.parametrize("valid_until", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_an_instant_beyond_the_utc_range_is_422_not_an_outage(
    s: Scenario, gateway: ThreadGateway, admin: ExchangeClient, valid_until: str
) -> None:
    dept = f"edu-{uuid.uuid4().hex[:6]}"
    admin.call("POST", "/v1/departments", json={"id": dept, "name": "Edu", "level": "city"})
    asker = new_client(admin, gateway.url, dept, ["subscriber"])
    r = asker.request(
        "POST",
        "/v1/agreements",
        json={
            "topic": s.topic,
            "fields": ["name"],
            "purpose": "p",
            "legal_basis": "l",
            "valid_from": "2020-01-01T00:00:00Z",
            "valid_until": valid_until,
        },
    )
    assert r.status_code == 422, r.text
    assert asker.call("GET", "/v1/agreements") == []
    asker.close()


def test_numbers_beyond_what_storage_holds_are_4xx(s: Scenario) -> None:
    huge = 10**30
    for path in (
        f"/registry/schemas/ids/{huge}",
        f"/registry/subjects/{s.subject}/versions/{huge}",
    ):
        r = s.publisher.request("GET", path)
        assert 400 <= r.status_code < 500, (path, r.text)
    body = {"records": [{"key": "a", "value": person(1)}], "schema_version": 2**63}
    r = s.publisher.request("POST", f"/v1/topics/{s.topic}/records", json=body)
    assert r.status_code == 422, r.text

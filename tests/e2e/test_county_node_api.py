"""The county node's local API: the gateway's request shapes and the gateway's refusals.

Every bad request is sent to both, the node (a real subprocess) and the site gateway, and must
get the same status and error code; the node must store nothing for it. Records that are
well-formed but do not match the schema (only the site has the registry) are accepted by the
node and refused by the site when forwarded: they land in the node's dead letters, visible
in its status, and forwarding goes on.
"""

from __future__ import annotations

import gzip
import json
import struct
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from exchange.client import ExchangeClient
from gateway.node_app import create_node_app
from node.config import Credentials
from node.service import Node
from tests.e2e.test_county_node import READING, records
from tests.support.gateway import ThreadGateway
from tests.support.node import NodeProcess
from tests.support.scenario import Scenario, build

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@pytest.fixture(scope="module")
def s(gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[Scenario]:
    scenario = build(admin, gateway.url, share_type="unconditional", schema=READING)
    yield scenario
    scenario.close()


@pytest.fixture(scope="module")
def node(
    s: Scenario, gateway: ThreadGateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeProcess]:
    n = NodeProcess(
        tmp_path_factory.mktemp("node") / "home",
        gateway.url,
        Credentials(client_id=s.publisher.client_id, client_secret=s.publisher._secret),
        topics=[s.topic],
        backoff_base_s=0.1,
        backoff_max_s=1.0,
    ).start()
    yield n
    n.close()


def frame(key: bytes | None, value: bytes) -> bytes:
    head = struct.pack(">I", 0xFFFFFFFF) if key is None else struct.pack(">I", len(key)) + key
    return head + struct.pack(">I", len(value)) + value


JSON = {"Content-Type": "application/json"}
AVRO = {"Content-Type": "application/vnd.exchange.avro"}
ONE = json.dumps({"records": records(0, 1, "bad")}).encode()
BAD: list[tuple[str, bytes, dict[str, str]]] = [
    ("not json", b"{nope", JSON),
    ("not an object", b"[1, 2]", JSON),
    ("no records", b"{}", JSON),
    ("empty records", b'{"records": []}', JSON),
    ("record without value", b'{"records": [{"key": "a"}]}', JSON),
    ("key not a string", b'{"records": [{"key": 5, "value": {}}]}', JSON),
    ("bad schema_version", b'{"records": [{"value": {}}], "schema_version": 0}', JSON),
    ("too deep", b'{"records":[{"value":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}]}", JSON),
    ("lone surrogate", b'{"records": [{"value": {"a": "\\ud800"}}]}', JSON),
    ("too many records", json.dumps({"records": [{"value": {}}] * 5001}).encode(), JSON),
    ("truncated avro", frame(b"k", b"\x00\x00\x00\x00\x01abc")[:-2], AVRO),
    ("empty avro", b"", AVRO),
    ("bad gzip", b"\x1f\x8bnot really", {**JSON, "Content-Encoding": "gzip"}),
    (
        "zip bomb",
        gzip.compress(b'{"records":[' + b" " * (17 * 1024 * 1024) + b"]}"),
        {**JSON, "Content-Encoding": "gzip"},
    ),
    ("unknown encoding", ONE, {**JSON, "Content-Encoding": "br"}),
    ("key too long", ONE, {**JSON, "Idempotency-Key": "k" * 201}),
]


@pytest.mark.parametrize(("case", "body", "headers"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_the_gateways_answer_and_stores_nothing(
    s: Scenario, node: NodeProcess, case: str, body: bytes, headers: dict[str, str]
) -> None:
    at_site = s.publisher.request(
        "POST", f"/v1/topics/{s.topic}/records", content=body, headers=headers
    )
    before = node.status()
    at_node = node.http.post(f"/v1/topics/{s.topic}/records", content=body, headers=headers)
    assert 400 <= at_site.status_code < 500, at_site.text
    assert at_node.status_code == at_site.status_code, (at_node.text, at_site.text)
    assert at_node.json()["code"] == at_site.json()["code"]
    assert at_node.headers["content-type"].startswith("application/problem+json")
    after = node.status()
    assert after["backlog_records"] + after["forwarded_records"] == (
        before["backlog_records"] + before["forwarded_records"]
    )


def test_key_reused_with_another_body_is_409_like_the_gateway(
    s: Scenario, node: NodeProcess
) -> None:
    key = uuid.uuid4().hex
    first = node.publish(s.topic, records(0, 2, "reuse"), headers={"Idempotency-Key": key})
    assert first.status_code == 202
    again = node.publish(s.topic, records(0, 2, "reuse"), headers={"Idempotency-Key": key})
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = node.publish(s.topic, records(5, 2, "reuse"), headers={"Idempotency-Key": key})
    assert other.status_code == 409
    assert other.json()["code"] == "conflict"


def test_callers_without_a_node_token_and_unknown_topics_are_refused(
    s: Scenario, node: NodeProcess
) -> None:
    url = f"{node.url}/v1/topics/{s.topic}/records"
    body = {"records": records(0, 1, "anon")}
    assert httpx.post(url, json=body).json()["code"] == "missing_token"
    wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer nt_wrong"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_token"
    # an exchange OAuth token is not a node token
    site_token = s.publisher.token()
    assert (
        httpx.post(url, json=body, headers={"Authorization": f"Bearer {site_token}"}).status_code
        == 401
    )
    unknown = node.publish("nobody.nothing", records(0, 1, "x"))
    assert unknown.status_code == 404


def test_records_the_site_refuses_become_dead_letters_and_forwarding_goes_on(
    s: Scenario, node: NodeProcess
) -> None:
    before = node.status()
    bad = node.publish(s.topic, [{"key": "b", "value": {"station": "b", "n": "not a long"}}])
    assert bad.status_code == 202  # the node has no registry: the site judges the values
    good = node.publish(s.topic, records(0, 10, uuid.uuid4().hex[:6]))
    assert good.status_code == 202
    st = node.wait_drained()
    assert st["dead_letters"] == before["dead_letters"] + 1
    assert st["rejected_records"] == before["rejected_records"] + 1
    assert st["forwarded_records"] >= before["forwarded_records"] + 10
    assert "422" in st["last_error"] and "invalid_records" in st["last_error"]


def test_every_node_route_refuses_callers_without_a_token(node: NodeProcess) -> None:
    """Generated from the node app's route table: a new route cannot ship unauthenticated."""
    from gateway.access import PUBLIC, app_routes, declared

    local = Node(node.home)
    app = create_node_app(local)
    try:
        for route in app_routes(app.routes):
            decl = declared(app, route)
            assert decl is not None, f"{route} has no @access"
            path = getattr(route, "path", "")
            if path.startswith(("/docs", "/openapi", "/redoc")):
                continue
            concrete = path.replace("{topic}", "t.x").replace("{sub_id}", "s1")
            for method in sorted(getattr(route, "methods", None) or ["GET"]):
                if method == "HEAD":
                    continue
                r = httpx.request(method, node.url + concrete, json={}, timeout=10)
                if PUBLIC in decl.allowed:
                    assert r.status_code == 200, (method, path)
                else:
                    assert r.status_code == 401, (method, path, r.status_code)
    finally:
        local.uplink.close()
        local.prefetcher.uplink.close()


def test_avro_frames_published_at_the_node_arrive_at_the_site(
    s: Scenario, node: NodeProcess
) -> None:
    from tests.support.avro_publish import AVRO as AVRO_TYPE
    from tests.support.avro_publish import frames

    tag = uuid.uuid4().hex[:6]
    sid = int(s.publisher.call("GET", f"/registry/subjects/{s.subject}/versions/latest")["id"])
    values = [(r["key"], r["value"]) for r in records(0, 20, tag)]
    body = frames(sid, READING, values)
    r = node.http.post(
        f"/v1/topics/{s.topic}/records", content=body, headers={"Content-Type": AVRO_TYPE}
    )
    assert r.status_code == 202, r.text
    assert r.json()["records"] == 20
    before = node.status()["dead_letters"]
    node.wait_drained()
    assert node.status()["dead_letters"] == before
    sub = s.subscriber.subscribe(s.topic, start="earliest")
    got: list[tuple[str, int]] = []
    deadline = time.monotonic() + 60
    while len(got) < 20 and time.monotonic() < deadline:
        page = s.subscriber.poll(sub, max=5000, wait_ms=500)
        got += [
            (x["key"], x["value"]["n"])
            for x in page["records"]
            if x["value"]["station"].startswith(f"{tag}-")
        ]
        s.subscriber.commit(sub, page["cursor"])
    assert sorted(got) == sorted((k, v["n"]) for k, v in values)

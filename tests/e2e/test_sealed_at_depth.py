"""Issue 12.1: classification holds at every depth and in every container, on both publish
paths, at rest in the broker's segment files and on delivery."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from exchange.client import ApiError, ExchangeClient
from tests.support.avro_publish import publish_avro
from tests.support.gateway import ThreadGateway
from tests.support.scenario import Scenario, build, grant, pull

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

BLOB: dict[str, Any] = {
    "type": "record",
    "name": "Blob",
    "namespace": "gov.test",
    "fields": [
        {"name": "id", "type": "string", "classification": "public"},
        {"name": "v", "type": "string", "classification": "secret"},
        {"name": "raw", "type": ["null", "bytes"], "default": None, "classification": "secret"},
        {"name": "children", "type": {"type": "array", "items": "Blob"}, "default": []},
    ],
}


def tree(tag: str, depth: int, *, raw: bool) -> dict[str, Any]:
    node: dict[str, Any] = {"id": f"{tag}-d{depth}", "v": f"SECRET-{tag}-d{depth}", "children": []}
    if raw:
        node["raw"] = f"RAWSECRET-{tag}-d{depth}".encode()
    if depth:
        node["children"] = [
            tree(f"{tag}a", depth - 1, raw=raw),
            tree(f"{tag}b", depth - 1, raw=raw),
        ]
    return node


def walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for c in node.get("children", []) for n in walk(c))]


def segments(log_dir: Path, topic: str) -> bytes:
    files = list(log_dir.glob(f"{topic}-*/*.log"))
    assert files
    return b"".join(p.read_bytes() for p in files)


@pytest.fixture
def blob(gateway: ThreadGateway, admin: ExchangeClient) -> Any:
    s = build(admin, gateway.url, share_type="unconditional", schema=BLOB, partitions=1)
    yield s
    s.close()


def test_recursive_blob_is_sealed_at_every_depth_on_both_paths(
    blob: Scenario, kafka_log_dir: Path
) -> None:
    s = blob
    by_json = tree("j", 3, raw=False)
    by_avro = tree("w", 3, raw=True)
    s.publisher.publish(s.topic, [{"key": "j", "value": by_json}])
    publish_avro(s.publisher, s.topic, s.subject, BLOB, [("w", by_avro)])
    nodes = walk(by_json) + walk(by_avro)
    secrets = [n["v"].encode() for n in nodes] + [n["raw"] for n in nodes if "raw" in n]

    disk = segments(kafka_log_dir, s.topic)
    assert all(n["id"].encode() in disk for n in nodes)  # the scan sees what is not sealed
    assert [x for x in secrets if x in disk] == []

    # A department with no agreement gets the tree's shape and public ids, nothing sealed.
    sub = s.subscriber.subscribe(s.topic)
    got = pull(s.subscriber, sub, 2)
    assert len(got) == 2
    text = json.dumps(got).encode()
    assert [x for x in secrets if x in text or base64.b64encode(x) in text] == []
    for rec, sent in zip(got, (by_json, by_avro), strict=True):
        assert [n["id"] for n in walk(rec["value"])] == [n["id"] for n in walk(sent)]
        assert all(set(n) == {"id", "children"} for n in walk(rec["value"]))

    # A grant of the path "v" covers v at every depth; "raw" stays withheld.
    grant(s, ["v"])
    sub2 = s.subscriber.subscribe(s.topic)
    opened = pull(s.subscriber, sub2, 2)
    for rec, sent in zip(opened, (by_json, by_avro), strict=True):
        assert [(n["id"], n["v"]) for n in walk(rec["value"])] == [
            (n["id"], n["v"]) for n in walk(sent)
        ]
        assert all("raw" not in n for n in walk(rec["value"]))


CONTAINERS: dict[str, Any] = {
    "type": "record",
    "name": "Case",
    "namespace": "gov.test",
    "fields": [
        {
            "name": "people",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Person",
                    "fields": [
                        {"name": "pid", "type": "string", "classification": "sensitive"},
                        {"name": "nick", "type": "string"},
                    ],
                },
            },
        },
        {"name": "by_role", "type": {"type": "map", "values": "Person"}},
        {"name": "lead", "type": ["null", "Person"], "default": None},
        {
            "name": "party",
            "type": [
                "Person",
                {
                    "type": "record",
                    "name": "Firm",
                    "fields": [{"name": "tax_no", "type": "long", "classification": "secret"}],
                },
            ],
        },
    ],
}


def test_secrets_in_array_map_union_and_reused_type_publish_sealed(
    gateway: ThreadGateway, admin: ExchangeClient, kafka_log_dir: Path
) -> None:
    s = build(admin, gateway.url, schema=CONTAINERS, partitions=1)
    case = {
        "people": [{"pid": "PID-ARRAY-1", "nick": "ann"}, {"pid": "PID-ARRAY-2", "nick": "bob"}],
        "by_role": {"judge": {"pid": "PID-MAP-1", "nick": "cid"}},
        "lead": {"pid": "PID-UNION-1", "nick": "dee"},
        "party": {"tax_no": 987654321012345},
    }
    other = {**case, "party": {"pid": "PID-BRANCH-1", "nick": "eve"}}
    s.publisher.publish(s.topic, [{"key": "a", "value": case}])
    publish_avro(s.publisher, s.topic, s.subject, CONTAINERS, [("b", other)])
    disk = segments(kafka_log_dir, s.topic)
    assert b"ann" in disk and b"judge" in disk
    hits = [p for p in (b"PID-ARRAY-1", b"PID-ARRAY-2", b"PID-MAP-1", b"PID-UNION-1") if p in disk]
    assert hits == [] and b"PID-BRANCH-1" not in disk

    grant(s, ["people.nick", "by_role.pid", "party.tax_no"])
    sub = s.subscriber.subscribe(s.topic)
    a, b = (r["value"] for r in pull(s.subscriber, sub, 2))
    assert a == {
        "people": [{"nick": "ann"}, {"nick": "bob"}],
        "by_role": {"judge": {"pid": "PID-MAP-1"}},
        "party": {"tax_no": 987654321012345},
    }
    assert b["party"] == {}  # the Person branch: pid is not granted on this path's record
    s.close()


@pytest.mark.parametrize(
    ("field_type", "named"),
    [
        (
            [
                {"type": "map", "values": "string"},
                {
                    "type": "record",
                    "name": "M",
                    "fields": [{"name": "s", "type": "string", "classification": "secret"}],
                },
            ],
            "'u'",
        ),
        (
            [
                {
                    "type": "record",
                    "name": "A",
                    "fields": [{"name": "s", "type": "string", "classification": "secret"}],
                },
                {
                    "type": "record",
                    "name": "B",
                    "fields": [{"name": "s", "type": "string", "default": ""}],
                },
            ],
            "'u'",
        ),
    ],
    ids=["map-or-record", "indistinct-records"],
)
def test_a_schema_that_cannot_be_sealed_is_refused_at_registration(
    gateway: ThreadGateway, admin: ExchangeClient, field_type: Any, named: str
) -> None:
    s = build(admin, gateway.url, partitions=1)
    schema = {"type": "record", "name": "U", "fields": [{"name": "u", "type": field_type}]}
    subject = f"{s.owner}.unsealable-value"
    r = s.publisher.request(
        "POST", f"/registry/subjects/{subject}/versions", json={"schema": json.dumps(schema)}
    )
    assert r.status_code == 422, r.text
    assert named in r.json()["message"]
    with pytest.raises(ApiError) as exc:
        s.publisher.call("GET", f"/registry/subjects/{subject}/versions")
    assert exc.value.status == 404  # nothing was registered
    s.close()

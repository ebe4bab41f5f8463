from __future__ import annotations

import json

from consent.asyncapi import asyncapi_document
from tests.unit.consent.conftest import F, entry


def test_document_has_a_channel_operation_and_message_per_topic() -> None:
    schema = json.dumps(
        {"type": "record", "name": "V", "fields": [{"name": "city", "type": "string"}]}
    )
    doc = asyncapi_document(
        [entry("unconditional", "health.visits"), entry("conditional", "health.beds")],
        gateway_url="http://127.0.0.1:8080",
        schema_for=lambda e: schema if e.topic == "health.visits" else None,
        fields_for=lambda e: [F("city", "public")] if e.topic == "health.visits" else None,
    )
    assert doc["asyncapi"] == "3.0.0"
    assert doc["servers"]["gateway"] == {
        **doc["servers"]["gateway"],
        "host": "127.0.0.1:8080",
        "protocol": "http",
    }
    visits = doc["channels"]["health.visits"]
    assert visits["address"] == "health.visits"
    assert visits["x-exchange"]["fields"] == [
        {"path": "city", "classification": "public", "data_subject": False}
    ]
    op = doc["operations"]["receive-health.visits"]
    assert op["action"] == "receive" and op["channel"] == {"$ref": "#/channels/health.visits"}
    msg = doc["components"]["messages"]["health_visits"]
    assert msg["payload"]["schema"]["name"] == "V"
    assert doc["components"]["messages"]["health_beds"]["payload"]["type"] == "object"
    # every $ref resolves inside the document
    for ref in _refs(doc):
        node = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []

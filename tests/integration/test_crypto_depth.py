"""FieldCrypto at every depth: seal, Avro-encode under the sealed schema, decode, open; the
AAD binds each occurrence's location (real KeyManager over SQLite, memory KMS)."""

from __future__ import annotations

import copy
import io
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest

from exchange.crypto import FieldCrypto, sealed_fields
from exchange.errors import InvalidInput
from schemas.canonical import fastavro_schema, parse
from schemas.sealing_rules import sealed_form
from tests.support.crypto import memory_field_crypto

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Blob",
    "fields": [
        {"name": "v", "type": "string", "classification": "secret"},
        {"name": "children", "type": {"type": "array", "items": "Blob"}},
        {
            "name": "tags",
            "type": {
                "type": "map",
                "values": {
                    "type": "record",
                    "name": "Tag",
                    "fields": [
                        {"name": "code", "type": "long", "classification": "sensitive"},
                        {"name": "label", "type": "string"},
                    ],
                },
            },
            "default": {},
        },
        {
            "name": "who",
            "type": [
                "null",
                "Tag",
                {
                    "type": "record",
                    "name": "Org",
                    "fields": [{"name": "reg", "type": "string", "classification": "secret"}],
                },
            ],
            "default": None,
        },
    ],
}
TEXT = json.dumps(SCHEMA)
SEALED = sealed_form(fastavro_schema(TEXT), parse(TEXT).fields)
FIELDS = sealed_fields(SEALED)
WIRE = fastavro.parse_schema(copy.deepcopy(SEALED))
RECORD = {
    "v": "top-secret",
    "children": [
        {"v": "kid-0", "children": [], "tags": {"a": {"code": 11, "label": "x"}}, "who": None},
        {
            "v": "kid-1",
            "children": [{"v": "grandkid", "children": [], "tags": {}, "who": {"reg": "ORG-9"}}],
            "tags": {},
            "who": {"code": 12, "label": "y"},
        },
    ],
    "tags": {"b": {"code": 13, "label": "z"}},
    "who": {"reg": "ORG-1"},
}
PLAINTEXTS = [b"top-secret", b"kid-0", b"kid-1", b"grandkid", b"ORG-9", b"ORG-1"]


@pytest.fixture
def crypto(tmp_path: Path) -> Iterator[FieldCrypto]:
    with memory_field_crypto(tmp_path, secrets.token_bytes(32)) as c:
        yield c


def wire_roundtrip(value: Any) -> Any:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, WIRE, value)
    return buf.getvalue(), fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), WIRE, None)


def seal(c: FieldCrypto, record: Any = RECORD) -> Any:
    return c.seal(
        topic="t.blob", owner="t", sealed_schema_id=3, key=b"k", record=record, fields=FIELDS
    )


def open_(c: FieldCrypto, value: Any, granted: set[str]) -> Any:
    return c.open(
        topic="t.blob", sealed_schema_id=3, key=b"k", record=value, fields=FIELDS, granted=granted
    )


def test_sealed_everywhere_and_opened_everywhere(crypto: FieldCrypto) -> None:
    assert set(FIELDS) == {"v", "tags.code", "who.code", "who.reg"}
    raw, decoded = wire_roundtrip(seal(crypto))
    assert [p for p in PLAINTEXTS if p in raw] == []
    assert b"kid" not in raw and b"label" not in raw  # field names are not in Avro binary
    opened = open_(crypto, decoded, set(FIELDS))
    assert opened.value == RECORD and opened.redacted == {}


def test_not_granted_is_omitted_at_every_depth(crypto: FieldCrypto) -> None:
    _, decoded = wire_roundtrip(seal(crypto))
    value = open_(crypto, decoded, {"tags.code"}).value
    assert "v" not in value and all("v" not in k for k in value["children"])
    assert value["children"][1]["children"][0] == {"children": [], "tags": {}, "who": {}}
    assert value["tags"] == {"b": {"code": 13, "label": "z"}}
    assert value["children"][1]["who"] == {"label": "y"}  # who.code not granted
    assert "ORG" not in json.dumps(value)


def test_an_envelope_moved_between_occurrences_fails(crypto: FieldCrypto) -> None:
    _, decoded = wire_roundtrip(seal(crypto))
    kids = decoded["children"]
    swapped = {**decoded, "children": [{**kids[0], "v": kids[1]["v"]}, kids[1]]}
    opened = open_(crypto, swapped, {"v"})
    assert opened.value["children"][0]["v"] is None and opened.redacted == {"v": "integrity"}
    assert opened.value["children"][1]["v"] == "kid-1"


def test_hostile_nesting_is_invalid_input_not_a_crash(crypto: FieldCrypto) -> None:
    deep: dict[str, Any] = {"v": "x", "children": [], "tags": {}, "who": None}
    for _ in range(5000):
        deep = {"v": "x", "children": [deep], "tags": {}, "who": None}
    with pytest.raises(InvalidInput, match="nested too deeply"):
        seal(crypto, deep)

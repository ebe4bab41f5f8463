from __future__ import annotations

import io
import json

import fastavro
import pytest

from schemas.canonical import fastavro_schema, parse
from schemas.errors import InvalidSchema

BASE = {"type": "record", "name": "P", "namespace": "gov", "fields": [{"name": "x", "type": "int"}]}


def fp(schema: object) -> str:
    return parse(json.dumps(schema)).fingerprint


def test_whitespace_order_namespace_spelling_and_docs_do_not_change_identity() -> None:
    same = {
        "fields": [{"type": {"type": "int"}, "name": "x", "doc": "d"}],
        "name": "gov.P",
        "type": "record",
    }
    assert fp(BASE) == fp(same)
    assert parse(json.dumps(BASE, indent=4)).fingerprint == fp(BASE)
    assert (
        parse(json.dumps(BASE)).canonical
        == '{"name":"gov.P","type":"record","fields":[{"name":"x","type":"int"}]}'
    )


@pytest.mark.parametrize(
    "change",
    [
        {"default": 1},
        {"classification": "secret"},
        {"aliases": ["y"]},
        {"confluent:tags": ["PII"]},
        {"type": "long"},
    ],
)
def test_meaningful_changes_change_identity(change: dict[str, object]) -> None:
    other = json.loads(json.dumps(BASE))
    other["fields"][0].update(change)
    assert fp(other) != fp(BASE)


def test_logical_type_changes_identity() -> None:
    assert fp({"type": "int", "logicalType": "date"}) != fp("int")


@pytest.mark.parametrize(
    "text",
    ["not json at all", '{"type": "record", "name": "X"}', '{"type": "nope"}', '"strin"', "[]x"],
)
def test_unparsable_schemas_are_invalid(text: str) -> None:
    with pytest.raises(InvalidSchema, match="Invalid schema"):
        parse(text)


def test_references_resolve_for_avro_and_fastavro() -> None:
    address = json.dumps(
        {
            "type": "record",
            "name": "Address",
            "namespace": "gov",
            "fields": [{"name": "s", "type": "string"}],
        }
    )
    person = json.dumps(
        {
            "type": "record",
            "name": "P",
            "namespace": "gov",
            "fields": [{"name": "a", "type": "Address"}],
        }
    )
    with pytest.raises(InvalidSchema):
        parse(person)
    parsed = parse(person, [address], [["gov.Address", "addr", 1]])
    assert "gov.Address" in parsed.canonical
    fa = fastavro_schema(person, [address])
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fa, {"a": {"s": "Main St"}})
    buf.seek(0)
    assert fastavro.schemaless_reader(buf, fa) == {"a": {"s": "Main St"}}


def test_hostile_nesting_is_invalid_not_a_crash() -> None:
    deep = '{"type": "array", "items": ' * 5000 + '"int"' + "}" * 5000
    with pytest.raises(InvalidSchema):
        parse(deep)

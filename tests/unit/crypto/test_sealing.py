"""Sealed schema transform and single-value Avro encoding (pure)."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest

from exchange.crypto import sealing
from exchange.crypto.sealing import sealed_fields, sealed_schema
from exchange.errors import InvalidInput

ADDRESS = {
    "type": "record",
    "name": "Address",
    "fields": [{"name": "street", "type": "string"}, {"name": "city", "type": "string"}],
}
PERSON: dict[str, Any] = {
    "type": "record",
    "name": "Person",
    "namespace": "gov.civil",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "ssn", "type": "string", "classification": "secret"},
        {"name": "age", "type": ["null", "int"], "default": None},
        {"name": "income", "type": "double"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "address", "type": ADDRESS},
        {"name": "previous", "type": ["null", "Address"], "default": None},
        {"name": "level", "type": {"type": "enum", "name": "Level", "symbols": ["A", "B"]}},
    ],
}


def test_sealed_fields_become_bytes_with_original_type() -> None:
    out = sealed_schema(PERSON, {"ssn", "age", "tags", "address.street", "level"})
    by_name = {f["name"]: f for f in out["fields"]}
    assert by_name["ssn"] == {
        "name": "ssn",
        "type": "bytes",
        "classification": "secret",
        "exchange.sealed": True,
        "exchange.original_type": "string",
    }
    assert by_name["age"]["type"] == "bytes" and "default" not in by_name["age"]
    assert by_name["age"]["exchange.original_type"] == ["null", "int"]
    assert by_name["level"]["exchange.original_type"]["name"] == "gov.civil.Level"
    street = by_name["address"]["type"]["fields"][0]
    assert street["type"] == "bytes" and street["exchange.sealed"] is True
    assert by_name["income"] == PERSON["fields"][3]  # untouched
    assert PERSON["fields"][1]["type"] == "string"  # input not mutated
    fastavro.parse_schema(out)


def test_sealed_fields_lists_paths_and_types() -> None:
    out = sealed_schema(PERSON, {"ssn", "address.street", "age"})
    # Address.street is sealed in the type, so also where "previous" reuses Address.
    assert sealed_fields(out) == {
        "ssn": "string",
        "age": ["null", "int"],
        "address.street": "string",
        "previous.street": "string",
    }
    assert sealed_fields(PERSON) == {}


def test_nested_through_optional_record() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "home", "type": ["null", ADDRESS], "default": None}],
    }
    out = sealed_schema(schema, {"home.city"})
    assert sealed_fields(out) == {"home.city": "string"}


def test_a_standard_consumer_decodes_sealed_records() -> None:
    out = sealed_schema(PERSON, {"ssn"})
    rec = {
        "id": "1",
        "ssn": b"\x01ciphertext",
        "age": None,
        "income": 1.5,
        "tags": [],
        "address": {"street": "s", "city": "c"},
        "previous": None,
        "level": "A",
    }
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(out), rec)
    buf.seek(0)
    assert fastavro.schemaless_reader(buf, fastavro.parse_schema(out), None)["ssn"] == rec["ssn"]


@pytest.mark.parametrize(
    "paths",
    [{"nope"}, {"id.x"}, {"tags.x"}, {"address.nope"}, {""}],
)
def test_invalid_paths_are_rejected(paths: set[str]) -> None:
    with pytest.raises(InvalidInput):
        sealed_schema(PERSON, paths)


def test_sealing_the_field_that_defines_a_reused_type_moves_the_definition() -> None:
    # "address" defines Address, which "previous" refers to: the definition moves there.
    out = sealed_schema(PERSON, {"address"})
    by_name = {f["name"]: f for f in out["fields"]}
    assert by_name["address"]["exchange.original_type"]["name"] == "gov.civil.Address"
    assert by_name["previous"]["type"][1]["name"] == "gov.civil.Address"
    assert sealed_fields(out) == {"address": by_name["address"]["exchange.original_type"]}
    fastavro.parse_schema(out)


def test_non_record_schema_is_rejected() -> None:
    with pytest.raises(InvalidInput):
        sealed_schema({"type": "string"}, set())  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("avro_type", "value"),
    [
        ("string", "张三 O'Brien"),
        ("int", -42),
        ("long", 2**40),
        ("double", 3.25),
        ("boolean", True),
        ("bytes", b"\x00\xff"),
        (["null", "string"], None),
        (["null", "string"], "x"),
        ({"type": "array", "items": "long"}, [1, 2, 3]),
        ({"type": "map", "values": "string"}, {"a": "b"}),
        (ADDRESS, {"street": "s", "city": "c"}),
        ({"type": "fixed", "name": "F", "size": 2}, b"ab"),
    ],
)
def test_value_roundtrip(avro_type: Any, value: Any) -> None:
    assert sealing.decode_value(avro_type, sealing.encode_value(avro_type, value)) == value
    assert sealing.type_key(avro_type) == sealing.type_key(json.loads(json.dumps(avro_type)))


def test_value_of_wrong_type_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        sealing.encode_value("int", "not an int")


def test_paths_replace_copies_only_the_path() -> None:
    rec = {"a": {"b": 1, "c": 2}, "d": [1]}
    out = sealing.replace_path(rec, ("a", "b"), 9)
    assert out == {"a": {"b": 9, "c": 2}, "d": [1]} and rec["a"]["b"] == 1
    assert out["d"] is rec["d"]
    assert sealing.replace_path(rec, ("a", "c"), sealing.MISSING) == {"a": {"b": 1}, "d": [1]}
    assert sealing.get_path({"a": None}, ("a", "b")) is sealing.MISSING


def test_a_type_that_does_not_stand_alone_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="sealed_fields"):
        sealing.encode_value(["null", "gov.civil.Address"], None)

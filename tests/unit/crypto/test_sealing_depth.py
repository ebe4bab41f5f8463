"""The sealed schema is defined over types: a classified field is sealed wherever its record
type occurs, and the output stands alone (pure)."""

from __future__ import annotations

import copy
import json
from typing import Any

import fastavro
import pytest

from exchange.crypto.sealing import ORIGINAL_TYPE, SEALED, sealed_fields
from schemas.canonical import fastavro_schema, parse
from schemas.errors import InvalidSchema
from schemas.sealing_rules import require_sealable, sealed_form

ITEM = {
    "type": "record",
    "name": "Item",
    "fields": [
        {"name": "s", "type": "string", "classification": "secret"},
        {"name": "n", "type": "int"},
    ],
}
HOLDER: dict[str, Any] = {
    "type": "record",
    "name": "Holder",
    "namespace": "gov.t",
    "fields": [
        {"name": "arr", "type": {"type": "array", "items": ITEM}},
        {"name": "map", "type": {"type": "map", "values": "Item"}},
        {"name": "opt", "type": ["null", "Item"], "default": None},
        {
            "name": "two",
            "type": [
                "Item",
                {
                    "type": "record",
                    "name": "Other",
                    "fields": [{"name": "t", "type": "long", "classification": "sensitive"}],
                },
            ],
        },
        {"name": "again", "type": "Item"},
    ],
}
BLOB = {
    "type": "record",
    "name": "Blob",
    "fields": [
        {"name": "v", "type": "bytes", "classification": "secret"},
        {"name": "children", "type": {"type": "array", "items": "Blob"}},
    ],
}


def sealed_of(schema: Any) -> Any:
    text = json.dumps(schema)
    return sealed_form(fastavro_schema(text), parse(text).fields)


def test_every_container_kind_is_sealed() -> None:
    out = sealed_of(HOLDER)
    assert set(sealed_fields(out)) == {"arr.s", "map.s", "opt.s", "two.s", "two.t", "again.s"}
    item = out["fields"][0]["type"]["items"]
    assert item["name"] == "gov.t.Item"  # one definition, sealed, used everywhere
    assert item["fields"][0]["type"] == "bytes" and item["fields"][0][SEALED] is True
    assert out["fields"][1]["type"]["values"] == "gov.t.Item"
    fastavro.parse_schema(copy.deepcopy(out))
    for t in sealed_fields(out).values():
        fastavro.parse_schema(t)  # each original type stands alone


def test_recursive_type_is_sealed_at_every_depth() -> None:
    out = sealed_of(BLOB)
    assert sealed_fields(out) == {"v": "bytes"}
    assert out["fields"][1]["type"]["items"] == "Blob"  # the recursion refers to the sealed type
    parsed = fastavro.parse_schema(copy.deepcopy(out))
    assert parsed["__named_schemas"]["Blob"]["fields"][0][SEALED] is True


def test_a_sealed_field_that_defines_a_type_used_later_keeps_it_defined() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "a", "type": ITEM, "classification": "secret"},
            {"name": "b", "type": ["null", "Item"], "default": None},
        ],
    }
    out = sealed_of(schema)
    assert out["fields"][0][ORIGINAL_TYPE]["name"] == "Item"  # unsealed, standalone
    assert out["fields"][0][ORIGINAL_TYPE]["fields"][0]["type"] == "string"
    assert out["fields"][1]["type"][1]["name"] == "Item"  # the definition moved here, sealed
    assert out["fields"][1]["type"][1]["fields"][0]["type"] == "bytes"
    assert set(sealed_fields(out)) == {"a", "b.s"}


def test_named_reference_from_another_schema_is_inlined() -> None:
    ref = json.dumps(ITEM)
    text = json.dumps(
        {"type": "record", "name": "R", "fields": [{"name": "x", "type": ["null", "Item"]}]}
    )
    p = parse(text, [ref])
    out = sealed_form(fastavro_schema(text, [ref]), p.fields)
    assert set(sealed_fields(out)) == {"x.s"}
    fastavro.parse_schema(copy.deepcopy(out))  # stands alone without the reference


def test_nothing_classified_means_no_sealed_form() -> None:
    plain = {"type": "record", "name": "P", "fields": [{"name": "a", "type": "string"}]}
    assert sealed_of(plain) is None


def test_registration_check_names_the_field() -> None:
    bad = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "u", "type": [{"type": "map", "values": "string"}, ITEM]}],
    }
    text = json.dumps(bad)
    with pytest.raises(InvalidSchema, match="field 'u'"):
        require_sealable(text, [], parse(text).fields)
    good = json.dumps(HOLDER)
    require_sealable(good, [], parse(good).fields)

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


def test_whitespace_and_spelling_of_the_same_text_do_not_change_identity() -> None:
    # Confluent keys on the text it stores: Java Avro's compact form.
    same = {
        "fields": [{"type": {"type": "int"}, "name": "x"}],
        "name": "gov.P",
        "type": "record",
    }
    assert fp(BASE) == fp(same)
    assert parse(json.dumps(BASE, indent=4)).fingerprint == fp(BASE)
    assert parse(json.dumps(same)).text == (
        '{"type":"record","name":"P","namespace":"gov","fields":[{"name":"x","type":"int"}]}'
    )
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
        {"doc": "a new doc is a new version, as in Confluent"},
        {"unique": "a custom property too"},
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


def test_custom_properties_on_primitives_are_kept_and_distinguish() -> None:
    x, y = parse('{"type":"string","unique":"X"}'), parse('{"type": "string", "unique": "Y"}')
    assert x.fingerprint != y.fingerprint
    assert (x.text, y.text) == ('{"type":"string","unique":"X"}', '{"type":"string","unique":"Y"}')
    assert parse('{"type": "string"}').text == parse("string").text == '"string"'


def test_normalized_form_merges_spelling_variants() -> None:
    a = '{"type":"record","name":"P","namespace":"gov","fields":[{"name":"x","type":"int"}],'
    b = '{"fields":[{"type":"int","name":"x"}],"name":"gov.P","type":"record",'
    a, b = a + '"p":1,"q":2}', b + '"q":2,"p":1}'
    assert parse(a).fingerprint != parse(b).fingerprint  # property order is kept as sent
    assert parse(a, normalize=True).fingerprint == parse(b, normalize=True).fingerprint
    assert parse(b, normalize=True).text == (
        '{"name":"gov.P","type":"record","fields":[{"name":"x","type":"int","order":"ascending"}],'
        '"p":1,"q":2}'
    )


def test_compact_form_is_javas_to_string() -> None:
    text = json.dumps(
        {
            "namespace": "gov",
            "doc": "résumé",
            "name": "R",
            "type": "record",
            "fields": [
                {"default": None, "type": ["null", "R"], "name": "next", "x-prop": 1},
                {
                    "name": "e",
                    "type": {"type": "enum", "name": "E", "namespace": "o", "symbols": ["A"]},
                },
                {"name": "e2", "type": "o.E", "order": "descending"},
            ],
        }
    )
    assert parse(text).text == (
        '{"type":"record","name":"R","namespace":"gov","doc":"résumé","fields":['
        '{"name":"next","type":["null","R"],"default":null,"x-prop":1},'
        '{"name":"e","type":{"type":"enum","name":"E","namespace":"o","symbols":["A"]}},'
        '{"name":"e2","type":"o.E","order":"descending"}]}'
    )

# ruff: noqa: E501  (the pair table reads best one pair per line)
"""Reader/writer pairs from the Avro specification's schema resolution rules, and every level."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.canonical import parse
from schemas.compatibility import Level, Prior, can_read, check
from schemas.errors import InvalidCompatibility


def rec(*fields: dict[str, Any], name: str = "R", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def f(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "E", "symbols": list(symbols), **extra}


def fixed(size: int, name: str = "F") -> dict[str, Any]:
    return {"type": "fixed", "name": name, "size": size}


# (reader, writer, reader can read writer's data)
PAIRS: list[tuple[str, Any, Any, bool]] = [
    # primitives and promotion: int -> long, float, double; long -> float, double; float -> double
    ("same int", "int", "int", True),
    ("null", "null", "null", True),
    ("int to long", "long", "int", True),
    ("int to float", "float", "int", True),
    ("int to double", "double", "int", True),
    ("long to float", "float", "long", True),
    ("long to double", "double", "long", True),
    ("float to double", "double", "float", True),
    ("no long to int", "int", "long", False),
    ("no float to int", "int", "float", False),
    ("no double to float", "float", "double", False),
    ("no double to long", "long", "double", False),
    ("string to bytes", "bytes", "string", True),
    ("bytes to string", "string", "bytes", True),
    ("no int to string", "string", "int", False),
    ("no boolean to int", "int", "boolean", False),
    ("no record from int", rec(f("a", "int")), "int", False),
    # records: field matching by name, defaults for missing reader fields
    ("added field with default", rec(f("a", "int"), f("b", "int", default=0)), rec(f("a", "int")), True),
    ("added field without default", rec(f("a", "int"), f("b", "int")), rec(f("a", "int")), False),
    ("removed field ignored", rec(f("a", "int")), rec(f("a", "int"), f("b", "int")), True),
    ("field promoted", rec(f("a", "long")), rec(f("a", "int")), True),
    ("field narrowed", rec(f("a", "int")), rec(f("a", "long")), False),
    ("field order irrelevant", rec(f("b", "int"), f("a", "int")), rec(f("a", "int"), f("b", "int")), True),
    ("record name mismatch", rec(f("a", "int"), name="S"), rec(f("a", "int")), False),
    ("record alias matches writer name", rec(f("a", "int"), name="S", aliases=["R"]), rec(f("a", "int")), True),
    ("field alias matches writer field", rec(f("c", "int", aliases=["a"])), rec(f("a", "int")), True),
    ("renamed field without alias", rec(f("c", "int")), rec(f("a", "int")), False),
    # nested records
    ("nested field added with default",
     rec(f("n", rec(f("x", "int"), f("y", "string", default=""), name="N"))),
     rec(f("n", rec(f("x", "int"), name="N"))), True),
    ("nested field added without default",
     rec(f("n", rec(f("x", "int"), f("y", "string"), name="N"))),
     rec(f("n", rec(f("x", "int"), name="N"))), False),
    ("nested type changed",
     rec(f("n", rec(f("x", "string"), name="N"))), rec(f("n", rec(f("x", "int"), name="N"))), False),
    # enums: the reader must know every writer symbol, unless it has a default symbol
    ("enum same", enum("A", "B"), enum("A", "B"), True),
    ("enum reader has more symbols", enum("A", "B", "C"), enum("A", "B"), True),
    ("enum reader misses a symbol", enum("A"), enum("A", "B"), False),
    ("enum reader default covers unknown symbol", enum("A", default="A"), enum("A", "B"), True),
    # unions
    ("union reader contains writer", ["null", "int"], "int", True),
    ("union reader promotes writer", ["null", "long"], "int", True),
    ("union writer branch missing in reader", ["null", "int"], ["null", "int", "string"], False),
    ("union writer subset of reader", ["null", "int", "string"], ["null", "int"], True),
    ("non-union reader, all writer branches readable", "long", ["int", "long"], True),
    ("non-union reader, a writer branch unreadable", "int", ["null", "int"], False),
    ("union of records, field added with default",
     ["null", rec(f("a", "int"), f("b", "int", default=1))], ["null", rec(f("a", "int"))], True),
    # arrays and maps resolve their items/values
    ("array items promoted", {"type": "array", "items": "long"}, {"type": "array", "items": "int"}, True),
    ("array items narrowed", {"type": "array", "items": "int"}, {"type": "array", "items": "long"}, False),
    ("map values promoted", {"type": "map", "values": "double"}, {"type": "map", "values": "int"}, True),
    ("map values incompatible", {"type": "map", "values": "int"}, {"type": "map", "values": "string"}, False),
    ("array vs map", {"type": "array", "items": "int"}, {"type": "map", "values": "int"}, False),
    # fixed: same name and size
    ("fixed same", fixed(16), fixed(16), True),
    ("fixed size mismatch", fixed(16), fixed(8), False),
    ("fixed name mismatch", fixed(16, "G"), fixed(16), False),
]  # fmt: skip


def avro(schema: Any) -> Any:
    return parse(json.dumps(schema)).avro


@pytest.mark.parametrize(
    ("reader", "writer", "ok"), [p[1:] for p in PAIRS], ids=[p[0] for p in PAIRS]
)
def test_reader_writer_pair(reader: Any, writer: Any, ok: bool) -> None:
    problems = can_read(avro(reader), avro(writer))
    assert (problems == []) is ok, problems


def test_at_least_forty_pairs() -> None:
    assert len(PAIRS) >= 40


# Three-version histories where each step is fine against the latest but not transitively.
A = f("a", "int")
BACKWARD_CHAIN = [rec(A), rec(A, f("b", "string", default="x")), rec(f("b", "string"))]
FORWARD_CHAIN = [rec(A), rec(f("a", "int", default=0), f("b", "int")), rec(f("b", "int"))]
FULL_CHAIN = [
    rec(A),
    rec(f("a", "int", default=0), f("b", "int", default=0)),
    rec(f("b", "int", default=0)),
]


def priors(*schemas: Any) -> list[Prior]:
    return [Prior(i + 1, json.dumps(s), avro(s)) for i, s in enumerate(schemas)]


def chain_ok(level: Level, chain: list[Any]) -> bool:
    *old, new = chain
    return check(level, avro(new), priors(*old)) == []


@pytest.mark.parametrize(
    ("level", "chain", "ok"),
    [
        (Level.BACKWARD, BACKWARD_CHAIN, True),
        (Level.BACKWARD_TRANSITIVE, BACKWARD_CHAIN, False),
        (Level.FORWARD, FORWARD_CHAIN, True),
        (Level.FORWARD_TRANSITIVE, FORWARD_CHAIN, False),
        (Level.FULL, FULL_CHAIN, True),
        (Level.FULL_TRANSITIVE, FULL_CHAIN, False),
        (Level.NONE, [rec(A), rec(f("a", "string"))], True),
        # direction matters: a backward-only step is not forward, and vice versa
        (Level.FORWARD, [*BACKWARD_CHAIN[:2], rec(A, f("b", "string"))], True),
        (Level.FORWARD, [rec(A), rec(A, f("b", "int"))], True),
        (Level.BACKWARD, [rec(A), rec(A, f("b", "int"))], False),
        (Level.BACKWARD, [rec(A, f("b", "int")), rec(A)], True),
        (Level.FORWARD, [rec(A, f("b", "int")), rec(A)], False),
        (Level.FULL, [rec(A), rec(A, f("b", "int"))], False),
        (Level.FULL, [rec(A), rec(A, f("b", "int", default=0))], True),
        (Level.FULL_TRANSITIVE, [rec(A), rec(A, f("b", "int", default=0))], True),
        (Level.BACKWARD_TRANSITIVE, BACKWARD_CHAIN[:2], True),
        (Level.FORWARD_TRANSITIVE, FORWARD_CHAIN[:2], True),
    ],
)
def test_levels(level: Level, chain: list[Any], ok: bool) -> None:
    assert chain_ok(level, chain) is ok


def test_first_version_is_always_compatible() -> None:
    for level in Level:
        assert check(level, avro("int"), []) == []


def test_messages_are_confluents_one_per_incompatibility() -> None:
    old = rec(A, f("b", "string"))
    new = rec(f("a", "string"), f("b", "int"), f("c", "int"))
    messages = check(Level.BACKWARD, avro(new), priors(old))
    assert messages[:3] == [
        "{errorType:'TYPE_MISMATCH', description:'The type (path '/fields/0/type') of a field in "
        "the new schema does not match with the old schema', additionalInfo:'reader type: STRING "
        "not compatible with writer type: INT'}",
        "{errorType:'TYPE_MISMATCH', description:'The type (path '/fields/1/type') of a field in "
        "the new schema does not match with the old schema', additionalInfo:'reader type: INT "
        "not compatible with writer type: STRING'}",
        "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'c' at path "
        "'/fields/2' in the new schema has no default value and is missing in the old schema', "
        "additionalInfo:'c'}",
    ]
    assert messages[3] == "{oldSchemaVersion: 1}"
    assert messages[4] == f"{{oldSchema: '{json.dumps(old)}'}}"
    assert messages[5] == "{validateFields: 'false', compatibility: 'BACKWARD'}"


def test_transitive_reports_the_newest_failing_version() -> None:
    *old, new = BACKWARD_CHAIN
    messages = check(Level.BACKWARD_TRANSITIVE, avro(new), priors(*old))
    assert "{oldSchemaVersion: 1}" in messages


def test_level_parsing() -> None:
    assert Level.parse("full_transitive") is Level.FULL_TRANSITIVE
    with pytest.raises(InvalidCompatibility):
        Level.parse("SIDEWAYS")

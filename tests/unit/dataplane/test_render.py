"""The pure rendering steps: projection, the JSON shape of a record, audit events."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import fastavro

from consent.policy import Decision
from dataplane.render import Opened, Rendered, assemble, delivery_events, jsonable, record_item
from exchange.kafka.port import InRecord
from tests.unit.dataplane.world import grant, subscription

REC = InRecord("health.t", 1, 7, 1000, b"k", b"", [])


SCHEMA = fastavro.parse_schema(
    {"type": "record", "name": "R", "fields": [{"name": n, "type": "long"} for n in "abc"]}
)


def _opened(value: dict[str, object], subjects: list[str] | None = None) -> Opened:
    redacted = {"b": "shredded", "c": "integrity"}
    return Opened(REC, 3, value, redacted, [], subjects or [], SCHEMA)


def test_record_item_projects_and_shows_only_allowed_redactions() -> None:
    item = record_item(_opened({"a": 1, "b": None, "c": None}), frozenset({"a", "b"}))
    assert item == {
        "record_id": item["record_id"],
        "key": "k",
        "value": {"a": 1, "b": None},
        "partition": 1,
        "offset": 7,
        "timestamp": 1000,
        "schema_id": 3,
        "redacted": {"b": "shredded"},
    }


def test_assemble_withholds_what_the_decision_refuses() -> None:
    allow = Decision(frozenset({"a"}), False, "ok")
    refuse = Decision(frozenset(), True, "no_subject_consent")
    opened = [_opened({"a": 1}, ["s1"]), _opened({"a": 2}, ["s2"])]
    out = assemble(opened, lambda o: allow if o.subjects == ["s1"] else refuse, Rendered())
    assert [r["value"] for r in out.records] == [{"a": 1}]
    assert out.withheld == [{"partition": 1, "offset": 7, "reason": "no_subject_consent"}]
    assert out.subjects == {"s1"} and out.withheld_subjects == {"s2"} and out.fields == {"a"}


def test_delivery_events_name_every_subscription_of_a_group() -> None:
    out = Rendered(
        records=[{"partition": 0, "offset": 1}],
        withheld=[{"partition": 0, "offset": 2, "reason": "no_fields"}],
        fields={"a"},
        subjects={"s"},
    )
    sub = subscription("civil", "health.t")
    events = delivery_events(
        out, sub, grant("civil", "health.t", {"a"}), to=["x", "y"], client_id="c", channel="sse"
    )
    assert [e.type for e in events] == ["records.delivered", "records.withheld"]
    assert events[0].data["subscription"] == ["x", "y"] and events[0].data["agreement"] == "agr-1"
    assert events[1].outcome == "denied" and events[1].data["reasons"] == ["no_fields"]
    assert delivery_events(Rendered(), sub, None, to=["x"], client_id="c", channel="sse") == []


def test_jsonable() -> None:
    assert jsonable({"b": b"\x00", "d": date(2026, 1, 2), "n": [Decimal("1.5")]}) == {
        "b": "AA==",
        "d": "2026-01-02",
        "n": ["1.5"],
    }


def test_a_record_whose_every_field_is_allowed_goes_out_as_decoded() -> None:
    item = record_item(_opened({"a": 1, "b": 2, "c": None}), frozenset({"a", "b", "c"}))
    assert item["value"] == {"a": 1, "b": 2, "c": None}
    assert item["redacted"] == {"b": "shredded", "c": "integrity"}
    # a key outside the schema is still projected away (never trust the shortcut blindly)
    item = record_item(_opened({"a": 1, "zz": 5}), frozenset({"a", "b", "c"}))
    assert item["value"] == {"a": 1}


def test_values_of_schemas_with_bytes_or_logical_types_are_made_json() -> None:
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "B",
            "fields": [
                {"name": "a", "type": "bytes"},
                {"name": "d", "type": {"type": "int", "logicalType": "date"}},
            ],
        }
    )
    o = Opened(REC, 3, {"a": b"\x00\x01", "d": date(2026, 1, 2)}, {}, [], [], schema)
    assert record_item(o, frozenset({"a", "d"}))["value"] == {"a": "AAE=", "d": "2026-01-02"}
    assert record_item(o, frozenset({"a"}))["value"] == {"a": "AAE="}


NAN, INF = float("nan"), float("inf")
FLOATS = fastavro.parse_schema(
    {
        "type": "record",
        "name": "F",
        "fields": [
            {"name": "d", "type": "double"},
            {"name": "f", "type": ["null", "float"]},
            {"name": "s", "type": "string"},
        ],
    }
)
NESTED = fastavro.parse_schema(
    {
        "type": "record",
        "name": "N",
        "fields": [
            {"name": "d", "type": "double"},
            {"name": "xs", "type": {"type": "array", "items": "double"}},
            {
                "name": "m",
                "type": {
                    "type": "record",
                    "name": "M",
                    "fields": [{"name": "v", "type": ["null", "double"]}],
                },
            },
        ],
    }
)


def _item(schema: object, value: dict[str, object], allowed: set[str]) -> dict[str, object]:
    o = Opened(REC, 3, value, {}, [], [], schema)
    return record_item(o, frozenset(allowed))["value"]  # type: ignore[no-any-return]


def test_non_finite_floats_are_delivered_as_the_strings_protobuf_json_writes() -> None:
    """NaN and infinities (an Avro-framed publish can carry them) are not JSON numbers: they
    go out as "NaN", "Infinity", "-Infinity", never as null and never as bare NaN tokens."""
    value = {"d": NAN, "f": -INF, "s": "NaN"}
    assert _item(FLOATS, value, {"d", "f", "s"}) == {"d": "NaN", "f": "-Infinity", "s": "NaN"}
    assert value["d"] is NAN  # the decoded value is not changed in place
    assert _item(FLOATS, {"d": INF, "f": None, "s": ""}, {"d", "f"}) == {"d": "Infinity", "f": None}
    finite = {"d": 1.5, "f": 2.0, "s": "x"}
    assert _item(FLOATS, finite, {"d", "f", "s"}) is finite  # nothing to change: no copy
    nested = {"d": 0.5, "xs": [1.0, NAN, -INF], "m": {"v": INF}}
    assert _item(NESTED, nested, {"d", "xs", "m"}) == {
        "d": 0.5,
        "xs": [1.0, "NaN", "-Infinity"],
        "m": {"v": "Infinity"},
    }
    assert jsonable({"a": [NAN]}) == {"a": ["NaN"]}

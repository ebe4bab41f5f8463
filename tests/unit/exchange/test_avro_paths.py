"""The schema walk: paths at every depth and in every container, rewrites, projection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exchange import avro_paths
from exchange.avro_paths import MISSING, compile_shape, problems, project, rewrite
from schemas.canonical import parse

SECRET = {"classification": "secret"}


def rec(name: str, *fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields)}


def f(name: str, t: Any, **attrs: Any) -> dict[str, Any]:
    return {"name": name, "type": t, **attrs}


BLOB = rec("Blob", f("v", "string", **SECRET), f("children", {"type": "array", "items": "Blob"}))
ITEM = rec("Item", f("s", "string", **SECRET), f("n", "int"))
HOLDER = rec(
    "Holder",
    f("arr", {"type": "array", "items": ITEM}),
    f("map", {"type": "map", "values": "Item"}),
    f("opt", ["null", "Item"], default=None),
    f("two", ["Item", rec("Other", f("t", "long", **SECRET))]),
    f("again", "Item"),
    f("deep", {"type": "array", "items": {"type": "map", "values": ["null", "Item"]}}),
)


def marked_paths(schema: Any) -> set[str]:
    shape = compile_shape(schema, lambda r, fld: fld.get("classification") == "secret")
    return {s.path for s in shape.marked()}


def test_recursion_maps_back_to_the_enclosing_occurrence() -> None:
    shape = compile_shape(BLOB)
    assert [s.path for s in shape.slots] == ["v", "children"]
    assert marked_paths(BLOB) == {"v"}


def test_every_container_kind_gives_the_record_relative_path() -> None:
    assert marked_paths(HOLDER) == {
        "arr.s",
        "map.s",
        "opt.s",
        "two.s",
        "two.t",
        "again.s",
        "deep.s",
    }


def test_paths_agree_with_the_classification_walk() -> None:
    for schema in (BLOB, HOLDER):
        infos = parse(json.dumps(schema)).fields
        assert {i.path for i in infos if i.classification == "secret"} == marked_paths(schema)
        assert {i.path for i in infos} == {s.path for s in compile_shape(schema).slots}


def test_mutual_recursion_and_reuse() -> None:
    a = rec("A", f("s", "string", **SECRET), f("b", ["null", rec("B", f("a", ["null", "A"]))]))
    top = rec("Top", f("x", a), f("y", "A"))
    assert marked_paths(top) == {"x.s", "y.s"}


def seal_all(schema: Any, value: Any) -> tuple[Any, list[tuple[str, str]]]:
    shape = compile_shape(schema, lambda r, fld: fld.get("classification") == "secret")
    seen: list[tuple[str, str]] = []

    def visit(slot: avro_paths.Slot, v: Any, loc: str) -> Any:
        seen.append((slot.path, loc))
        return f"<{v}>"

    return rewrite(shape.root, value, "", visit, sealing=True), seen


def test_rewrite_reaches_every_depth_with_locations() -> None:
    value = {"v": "0", "children": [{"v": "1", "children": [{"v": "2", "children": []}]}]}
    out, seen = seal_all(BLOB, value)
    assert out == {
        "v": "<0>",
        "children": [{"v": "<1>", "children": [{"v": "<2>", "children": []}]}],
    }
    assert seen == [("v", "v"), ("v", "children[0].v"), ("v", "children[0].children[0].v")]
    assert value["children"][0]["v"] == "1"  # input untouched


def test_rewrite_in_arrays_maps_unions_and_reuse() -> None:
    item = {"s": "x", "n": 1}
    value = {
        "arr": [item, {"s": "y", "n": 2}],
        "map": {'k"1': item},
        "opt": None,
        "two": {"t": 7},
        "again": item,
        "deep": [{"a": None, "b": item}],
    }
    out, seen = seal_all(HOLDER, value)
    assert out["arr"] == [{"s": "<x>", "n": 1}, {"s": "<y>", "n": 2}]
    assert out["map"] == {'k"1': {"s": "<x>", "n": 1}}
    assert out["opt"] is None
    assert out["two"] == ("Other", {"t": "<7>"})  # tuple notation: the writer's branch
    assert out["again"] == {"s": "<x>", "n": 1}
    assert out["deep"] == [{"a": None, "b": {"s": "<x>", "n": 1}}]
    assert ("map.s", 'map["k\\"1"].s') in seen and ("deep.s", 'deep[0]["b"].s') in seen


def test_missing_drops_the_field_and_decoded_unions_match_exactly() -> None:
    shape = compile_shape(HOLDER, lambda r, fld: fld.get("classification") == "secret")
    value = {"two": {"s": "a", "n": 1}, "arr": []}
    out = rewrite(shape.root, value, "", lambda s, v, loc: MISSING, sealing=False)
    assert out == {"two": {"n": 1}, "arr": []}


@pytest.mark.parametrize(
    ("field_type", "why"),
    [
        ([{"type": "map", "values": "string"}, ITEM], "a union of a map and a record"),
        ([ITEM, rec("Twin", f("s", "string"), f("n", "int"))], "accept the same fields"),
        (
            [ITEM, rec("Twin", f("s", "string", **SECRET), f("n", "int", default=0))],
            "accept the same fields",
        ),
    ],
)
def test_unsealable_shapes_are_named(field_type: Any, why: str) -> None:
    shape = compile_shape(
        rec("R", f("u", field_type)), lambda r, fld: fld.get("classification") == "secret"
    )
    found = problems(shape)
    assert found and why in found[0] and "'u" in found[0]


def test_distinguishable_unions_and_plain_shapes_have_no_problems() -> None:
    for schema in (BLOB, HOLDER):
        assert problems(compile_shape(schema, lambda r, fld: "classification" in fld)) == []
    root_union = [ITEM, "null"]
    shape = compile_shape(root_union, lambda r, fld: "classification" in fld)
    assert problems(shape) == ["only a record at the root of a schema can carry sealed fields"]


def test_projection_follows_containers_and_recursion() -> None:
    shape = compile_shape(BLOB)
    assert isinstance(shape.root, avro_paths.Record)
    value = {"v": "0", "children": [{"v": "1", "children": []}]}
    # "v" names v at every depth: the tree's skeleton is kept to carry them.
    assert project(shape.root, value, frozenset({"v"})) == {
        "v": "0",
        "children": [{"v": "1", "children": []}],
    }
    assert project(shape.root, value, frozenset({"children"})) == {"children": value["children"]}
    holder = compile_shape(HOLDER).root
    assert isinstance(holder, avro_paths.Record)
    v = {
        "arr": [{"s": "a", "n": 1}],
        "map": {"k": {"s": "b", "n": 2}},
        "two": {"t": 3},
        "opt": None,
    }
    assert project(holder, v, frozenset({"arr.n", "map.s", "two.t", "opt.s"})) == {
        "arr": [{"n": 1}],
        "map": {"k": {"s": "b"}},
        "two": {"t": 3},
    }


def test_an_exploding_reuse_is_refused() -> None:
    t: Any = rec("L0", f("x", "int"))
    for i in range(1, 20):
        t = rec(f"L{i}", f("a", t), f("b", f"L{i - 1}"))
    with pytest.raises(Exception, match="more than"):
        compile_shape(t)

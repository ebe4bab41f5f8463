"""Where the fields of an Avro schema live, and walks over values guided by it. Pure: no I/O.

**Paths** (what agreements, consents, policy, projection and DEK families name): the names of
the fields from the root record down to a field, joined by dots. Containers are transparent:
the items of an array, the values of a map and the branches of a union add nothing, so field
``v`` of the records in array ``children`` is ``children.v``. A record that recurs inside
itself maps back to its enclosing occurrence, so paths stay finite: in
``Blob {v, children: array<Blob>}`` the ``v`` at every depth has the path ``v``. A named type
used at two places (``home: Address``, ``work: Address``) gives two paths (``home.street``,
``work.street``).

**Locations** name one occurrence inside one value, indices and map keys included
(``children[0].v``, ``m["k"].x``); the envelope binds the location into its AAD. For a field
outside any array or map the location equals the path.

A *shape* is the schema compiled into nodes (records, arrays, maps, unions); slots are the
fields of a record, each with its path. ``marked`` slots (the sealed fields) are leaves.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import fastavro

from exchange.errors import InvalidInput

MAX_SLOTS = 5_000  # a schema reusing named types unfolds; refuse an explosion


@dataclass(eq=False)
class Slot:
    name: str
    path: str
    field: Mapping[str, Any]  # the field's JSON (fastavro-parsed)
    marked: bool
    child: Node | None = None  # None: nothing to walk below (primitive, enum, fixed, marked)
    below: frozenset[str] = frozenset()  # paths at and below this slot
    reaches_mark: bool = False  # the slot is marked or a marked slot lies below it


@dataclass(eq=False)
class Record:
    name: str
    slots: list[Slot] = field(default_factory=list)
    by_name: dict[str, Slot] = field(default_factory=dict)
    required: frozenset[str] = frozenset()  # fields without a default

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.by_name)


@dataclass(eq=False)
class Array:
    items: Node


@dataclass(eq=False)
class Map:
    values: Node


@dataclass(eq=False)
class Union:
    records: tuple[Record, ...]
    array: Array | None
    map: Map | None
    path: str  # of the field holding the union (for messages)
    has_map: bool = False  # a map branch, even one with nothing to walk


Node = Record | Array | Map | Union
MISSING: Any = object()  # a visitor's answer: drop this field from its record


@dataclass(frozen=True)
class Shape:
    root: Node | None
    slots: tuple[Slot, ...]  # every slot, each occurrence once
    unions: tuple[Union, ...]

    def marked(self) -> Iterator[Slot]:
        return (s for s in self.slots if s.marked)


def parsed_schema(schema: Any) -> Any:
    """``schema`` parsed by fastavro (full names, ``__named_schemas``); the input is kept."""
    if isinstance(schema, dict) and schema.get("__fastavro_parsed"):
        return schema
    try:
        return fastavro.parse_schema(copy.deepcopy(schema))
    except Exception as exc:  # fastavro raises several types for invalid schemas
        raise InvalidInput(f"not a valid Avro schema: {exc}") from None


def compile_shape(
    schema: Any, marked: Callable[[str, Mapping[str, Any]], bool] = lambda r, f: False
) -> Shape:
    """The shape of ``schema``; ``marked(record full name, field)`` picks the leaf fields."""
    return _Compiler(parsed_schema(schema), marked).run()


class _Compiler:
    def __init__(self, parsed: Any, marked: Callable[[str, Mapping[str, Any]], bool]) -> None:
        self.parsed = parsed
        self.named: dict[str, Any] = (
            parsed.get("__named_schemas", {}) if isinstance(parsed, dict) else {}
        )
        self.marked = marked
        self.slots: list[Slot] = []
        self.unions: list[Union] = []
        self.nodes: list[Node] = []

    def run(self) -> Shape:
        root = self.node(self.parsed, "", {})
        self._close()
        return Shape(root, tuple(self.slots), tuple(self.unions))

    def node(self, t: Any, prefix: str, ancestors: dict[str, Record]) -> Node | None:
        if isinstance(t, str):
            if t in ancestors:  # recursion: back to the enclosing occurrence (its paths)
                return ancestors[t]
            t = self.named.get(t)
        if isinstance(t, list):
            return self._union(t, prefix, ancestors)
        if not isinstance(t, dict):
            return None
        kind = t.get("type")
        if kind in ("record", "error"):
            return self._record(t, prefix, ancestors)
        if kind == "array":
            items = self.node(t.get("items"), prefix, ancestors)
            return self._keep(Array(items)) if items is not None else None
        if kind == "map":
            values = self.node(t.get("values"), prefix, ancestors)
            return self._keep(Map(values)) if values is not None else None
        if isinstance(kind, dict | list):
            return self.node(kind, prefix, ancestors)
        return None

    def _keep(self, n: Any) -> Any:
        self.nodes.append(n)
        return n

    def _union(self, branches: list[Any], prefix: str, ancestors: dict[str, Record]) -> Node | None:
        built = [self.node(b, prefix, ancestors) for b in branches]
        records = tuple(b for b in built if isinstance(b, Record))
        array = next((b for b in built if isinstance(b, Array)), None)
        map_ = next((b for b in built if isinstance(b, Map)), None)
        if not records and array is None and map_ is None:
            return None
        has_map = any(isinstance(b, dict) and b.get("type") == "map" for b in branches)
        u = self._keep(Union(records, array, map_, prefix, has_map))
        self.unions.append(u)
        return u  # type: ignore[no-any-return]

    def _record(self, t: dict[str, Any], prefix: str, ancestors: dict[str, Record]) -> Record:
        name = str(t.get("name"))
        if name in ancestors:
            return ancestors[name]
        rec: Record = self._keep(Record(name))
        inner = {**ancestors, name: rec}
        required = set()
        for f in t.get("fields") or []:
            fname = str(f.get("name"))
            path = f"{prefix}.{fname}" if prefix else fname
            slot = Slot(fname, path, f, bool(self.marked(name, f)))
            if len(self.slots) >= MAX_SLOTS:
                raise InvalidInput(f"schema unfolds into more than {MAX_SLOTS} field paths")
            self.slots.append(slot)
            if not slot.marked:
                slot.child = self.node(f.get("type"), path, inner)
            rec.slots.append(slot)
            rec.by_name[fname] = slot
            if "default" not in f:
                required.add(fname)
        rec.required = frozenset(required)
        return rec

    def _close(self) -> None:
        """Paths below each slot and whether a mark lies below: a fixpoint, for recursion."""
        below: dict[int, frozenset[str]] = {id(n): frozenset() for n in self.nodes}
        reach: dict[int, bool] = {id(n): False for n in self.nodes}
        changed = True
        while changed:  # children were made after their parents: one pass unless recursion
            changed = False
            for n in reversed(self.nodes):
                paths, marks = self._local(n, below, reach)
                if paths != below[id(n)] or marks != reach[id(n)]:
                    below[id(n)], reach[id(n)], changed = paths, marks, True
        for s in self.slots:
            kid = s.child
            s.below = frozenset({s.path}) | (below[id(kid)] if kid is not None else frozenset())
            s.reaches_mark = s.marked or (kid is not None and reach[id(kid)])

    @staticmethod
    def _local(
        n: Node, below: dict[int, frozenset[str]], reach: dict[int, bool]
    ) -> tuple[frozenset[str], bool]:
        kids: list[Node] = []
        paths: set[str] = set()
        marks = False
        if isinstance(n, Record):
            for s in n.slots:
                paths.add(s.path)
                marks = marks or s.marked
                if s.child is not None:
                    kids.append(s.child)
        elif isinstance(n, Array):
            kids.append(n.items)
        elif isinstance(n, Map):
            kids.append(n.values)
        else:
            kids.extend(n.records)
            kids.extend(k for k in (n.array, n.map) if k is not None)
        for k in kids:
            paths |= below[id(k)]
            marks = marks or reach[id(k)]
        return frozenset(paths), marks


def reaches_mark(n: Node | None) -> bool:
    if isinstance(n, Record):
        return any(s.reaches_mark for s in n.slots)
    if isinstance(n, Array):
        return reaches_mark(n.items)
    if isinstance(n, Map):
        return reaches_mark(n.values)
    if isinstance(n, Union):
        return any(reaches_mark(k) for k in (*n.records, n.array, n.map) if k is not None)
    return False


def problems(shape: Shape) -> list[str]:
    """Why marked fields of ``shape`` could not be found again in every value (empty = fine)."""
    out: list[str] = []
    if shape.root is not None and not isinstance(shape.root, Record) and reaches_mark(shape.root):
        out.append("only a record at the root of a schema can carry sealed fields")
    for u in shape.unions:
        if not reaches_mark(u):
            continue
        where = repr(u.path) if u.path else "the root"
        if u.has_map and u.records:
            out.append(
                f"field {where}: a union of a map and a record cannot carry sealed fields "
                "(a value could be either)"
            )
        for i, a in enumerate(u.records):
            for b in u.records[i + 1 :]:
                if (a.required | b.required) <= (a.names & b.names):
                    out.append(
                        f"field {where}: records {a.name} and {b.name} of the union accept "
                        "the same fields, so a value cannot say which one it is; give one a "
                        "required field the other lacks"
                    )
    return list(dict.fromkeys(out))


# -- walks --------------------------------------------------------------------------------------
Visit = Callable[[Slot, Any, str], Any]


def rewrite(node: Node | None, value: Any, loc: str, visit: Visit, *, sealing: bool) -> Any:
    """``value`` with every marked slot's value replaced by ``visit(slot, value, location)``
    (``MISSING`` drops the field). Copies only what changes. ``sealing``: the value is a
    publisher's (union records chosen by the fields given, then named with fastavro's tuple
    notation so the writer takes the same branch); otherwise a decoded one (exact fields)."""
    if isinstance(node, Record):
        return (
            _rewrite_record(node, value, loc, visit, sealing) if isinstance(value, dict) else value
        )
    if isinstance(node, Array):
        if not isinstance(value, list):
            return value
        items = [
            rewrite(node.items, v, f"{loc}[{i}]", visit, sealing=sealing)
            for i, v in enumerate(value)
        ]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if isinstance(node, Map):
        if not isinstance(value, dict):
            return value
        vals = {
            k: rewrite(node.values, v, _key(loc, k), visit, sealing=sealing)
            for k, v in value.items()
        }
        return vals if any(vals[k] is not value[k] for k in value) else value
    if isinstance(node, Union):
        return _rewrite_union(node, value, loc, visit, sealing)
    return value


def _rewrite_record(
    node: Record, value: dict[str, Any], loc: str, visit: Visit, sealing: bool
) -> Any:
    out: dict[str, Any] | None = None
    for slot in node.slots:
        if not slot.reaches_mark or slot.name not in value:
            continue
        old = value[slot.name]
        where = f"{loc}.{slot.name}" if loc else slot.name
        if slot.marked:
            new = visit(slot, old, where)
        else:
            new = rewrite(slot.child, old, where, visit, sealing=sealing)
        if new is not old:
            out = dict(value) if out is None else out
            if new is MISSING:
                del out[slot.name]
            else:
                out[slot.name] = new
    return value if out is None else out


def _rewrite_union(node: Union, value: Any, loc: str, visit: Visit, sealing: bool) -> Any:
    if isinstance(value, tuple) and len(value) == 2:  # fastavro's (record name, value)
        rec = next((r for r in node.records if r.name == value[0]), None)
        return rewrite(rec, value[1], loc, visit, sealing=sealing) if rec else value
    if isinstance(value, list):
        return rewrite(node.array, value, loc, visit, sealing=sealing)
    if not isinstance(value, dict):
        return value
    rec = choose(node, value, exact=not sealing)
    if rec is None:
        if sealing and not node.has_map and any(reaches_mark(r) for r in node.records):
            raise InvalidInput(f"{loc or 'value'}: matches no record of its union")
        return rewrite(node.map, value, loc, visit, sealing=sealing)
    out = rewrite(rec, value, loc, visit, sealing=sealing)
    return (rec.name, out) if sealing and len(node.records) > 1 else out


def choose(node: Union, value: dict[str, Any], *, exact: bool) -> Record | None:
    """The record branch a dict is: a decoded record has exactly its fields; a publisher's may
    leave out fields with defaults. Registration makes the answer unique (``problems``)."""
    keys = value.keys()
    for r in node.records:
        if (keys == r.names) if exact else (r.required <= keys <= r.names):
            return r
    return None


def _key(loc: str, k: str) -> str:
    return f"{loc}[{json.dumps(k, ensure_ascii=False)}]"


# -- projection ---------------------------------------------------------------------------------
def project(node: Record, value: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """Keep only allowed paths: an allowed field whole, a container as far as its allowed
    fields (in every array item, map value and union branch)."""
    out: dict[str, Any] = {}
    for k, v in value.items():
        slot = node.by_name.get(k)
        if slot is None:
            continue
        if slot.path in allowed:
            out[k] = v
        elif slot.child is not None and not slot.below.isdisjoint(allowed):
            kept = _project_any(slot.child, v, allowed)
            if kept is not MISSING:
                out[k] = kept
    return out


def _project_any(node: Node, value: Any, allowed: frozenset[str]) -> Any:
    if isinstance(node, Union):
        if isinstance(value, list) and node.array is not None:
            return _project_any(node.array, value, allowed)
        if isinstance(value, dict):
            rec = next((r for r in node.records if value.keys() <= r.names), None)
            if rec is not None:
                return project(rec, value, allowed)
            if node.map is not None:
                return _project_any(node.map, value, allowed)
        return MISSING
    if isinstance(node, Record) and isinstance(value, dict):
        return project(node, value, allowed)
    if isinstance(node, Array) and isinstance(value, list):
        return [_item(node.items, v, allowed) for v in value]
    if isinstance(node, Map) and isinstance(value, dict):
        return {k: _item(node.values, v, allowed) for k, v in value.items()}
    return MISSING


def _item(node: Node, value: Any, allowed: frozenset[str]) -> Any:
    kept = _project_any(node, value, allowed)
    return None if kept is MISSING else kept  # keep positions; an item is never shown unasked


# -- shapes of parsed schemas, by identity ------------------------------------------------------
_SHAPES: dict[int, tuple[Any, Shape]] = {}


def shape_of(parsed: Any) -> Shape:
    """The (cached) shape of a fastavro-parsed schema; callers pass the same objects again."""
    hit = _SHAPES.get(id(parsed))
    if hit is not None and hit[0] is parsed:
        return hit[1]
    shape = compile_shape(parsed)
    if len(_SHAPES) > 1024:
        _SHAPES.clear()
    _SHAPES[id(parsed)] = (parsed, shape)
    return shape

"""The two textual forms Confluent gives an Avro schema. Pure: no I/O.

``confluent_form`` is what Confluent stores and returns (Java Avro's ``Schema.toString()``:
compact JSON, attributes in Avro's order, doc and custom properties kept, a named type written
once and then referred to by name). ``normalized_form`` is what ``normalize=true`` (or the
``normalize`` config) registers instead: full names, fixed attribute order, sorted properties,
so that spelling variants of one schema share one id. Both take parsed JSON that the Avro
parser has already accepted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})
_SCHEMA_RESERVED = frozenset(
    {"type", "name", "namespace", "doc", "fields", "aliases", "symbols", "size", "items", "values"}
)
_FIELD_RESERVED = frozenset({"name", "type", "doc", "default", "order", "aliases"})
_LOGICAL = ("logicalType", "precision", "scale")


def dumps(value: Any) -> str:
    # Jackson's compact output: no spaces, non-ASCII characters as they are.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def confluent_form(doc: Any, known: Iterable[str] = ()) -> str:
    """Java Avro's ``toString()`` of ``doc``; ``known`` names types defined by references."""
    return dumps(_Compact(set(known)).node(doc, None))


def normalized_form(doc: Any, known: Iterable[str] = ()) -> str:
    return dumps(_Normal(set(known)).node(doc, None))


def full_name(name: str, space: str | None) -> str:
    return name if "." in name or not space else f"{space}.{name}"


def _split(full: str) -> tuple[str, str | None]:
    space, _, short = full.rpartition(".")
    return short, space or None


class _Compact:
    def __init__(self, known: set[str]) -> None:
        self.defined = known

    def node(self, doc: Any, space: str | None) -> Any:
        if isinstance(doc, list):
            return [self.node(d, space) for d in doc]
        if isinstance(doc, str):
            return doc if doc in PRIMITIVES else self.ref(self.resolve(doc, space), space)
        if not isinstance(doc, dict):
            return doc
        kind = doc.get("type")
        if not isinstance(kind, str):  # {"type": {...}} / {"type": [...]}: the inner schema
            return self.node(kind, space)
        if kind in NAMED:
            return self.named(doc, kind, space)
        props = {k: v for k, v in doc.items() if k not in _SCHEMA_RESERVED}
        if kind == "array":
            return {"type": "array", "items": self.node(doc.get("items"), space), **props}
        if kind == "map":
            return {"type": "map", "values": self.node(doc.get("values"), space), **props}
        if kind in PRIMITIVES:
            return {"type": kind, **props} if props else kind
        return self.ref(self.resolve(kind, space), space)

    def resolve(self, name: str, space: str | None) -> str:
        # Avro looks a short name up in the enclosing namespace first, then in the null one.
        full = full_name(name, space)
        return full if full in self.defined or name not in self.defined else name

    def ref(self, full: str, space: str | None) -> str:
        short, ns = _split(full)
        return short if ns == space else full

    def named(self, doc: dict[str, Any], kind: str, space: str | None) -> Any:
        ns = doc.get("namespace") if "." not in str(doc.get("name", "")) else None
        full = full_name(str(doc.get("name", "")), ns if ns is not None else space)
        if full in self.defined:
            return self.ref(full, space)
        self.defined.add(full)
        short, own = _split(full)
        out: dict[str, Any] = {"type": kind, "name": short}
        if own != space:
            out["namespace"] = own or ""
        if "doc" in doc:
            out["doc"] = doc["doc"]
        if kind in ("record", "error"):
            out["fields"] = [self.field(f, own) for f in doc.get("fields", [])]
        elif kind == "enum":
            out["symbols"] = doc.get("symbols", [])
            if "default" in doc:
                out["default"] = doc["default"]
        else:
            out["size"] = doc.get("size")
        reserved = _SCHEMA_RESERVED | ({"default"} if kind == "enum" else set())
        out.update({k: v for k, v in doc.items() if k not in reserved})
        if doc.get("aliases"):
            out["aliases"] = [self.ref(full_name(a, own), own) for a in doc["aliases"]]
        return out

    def field(self, f: dict[str, Any], space: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"name": f.get("name"), "type": self.node(f.get("type"), space)}
        if "doc" in f:
            out["doc"] = f["doc"]
        if "default" in f:
            out["default"] = f["default"]
        if f.get("order", "ascending") != "ascending":
            out["order"] = f["order"]
        if f.get("aliases"):
            out["aliases"] = f["aliases"]
        out.update({k: v for k, v in f.items() if k not in _FIELD_RESERVED})
        return out


class _Normal(_Compact):
    """Confluent's ``AvroSchemaUtils.toNormalizedString``."""

    def node(self, doc: Any, space: str | None) -> Any:
        if isinstance(doc, dict) and isinstance(doc.get("type"), str):
            kind = doc["type"]
            if kind in PRIMITIVES or kind in ("array", "map"):
                return self.simple(doc, kind, space)
        return super().node(doc, space)

    def ref(self, full: str, space: str | None) -> str:
        return full

    def simple(self, doc: dict[str, Any], kind: str, space: str | None) -> Any:
        out: dict[str, Any] = {"type": kind}
        if kind == "array":
            out["items"] = self.node(doc.get("items"), space)
        elif kind == "map":
            out["values"] = self.node(doc.get("values"), space)
        out.update(_logical(doc))
        out.update(_sorted(doc, _SCHEMA_RESERVED | set(_LOGICAL)))
        return out if len(out) > 1 else kind

    def named(self, doc: dict[str, Any], kind: str, space: str | None) -> Any:
        ns = doc.get("namespace") if "." not in str(doc.get("name", "")) else None
        full = full_name(str(doc.get("name", "")), ns if ns is not None else space)
        if full in self.defined:
            return full
        self.defined.add(full)
        _, own = _split(full)
        out: dict[str, Any] = {"name": full, "type": kind}
        if kind in ("record", "error"):
            out["fields"] = [self.field(f, own) for f in doc.get("fields", [])]
        elif kind == "enum":
            out["symbols"] = doc.get("symbols", [])
        else:
            out["size"] = doc.get("size")
        out.update(_logical(doc))
        if doc.get("doc"):
            out["doc"] = doc["doc"]
        if doc.get("aliases"):
            out["aliases"] = sorted(full_name(a, own) for a in doc["aliases"])
        if kind == "enum" and "default" in doc:
            out["default"] = doc["default"]
        reserved = _SCHEMA_RESERVED | set(_LOGICAL) | ({"default"} if kind == "enum" else set())
        out.update(_sorted(doc, reserved))
        return out

    def field(self, f: dict[str, Any], space: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"name": f.get("name"), "type": self.node(f.get("type"), space)}
        out["order"] = f.get("order", "ascending")
        if "doc" in f:
            out["doc"] = f["doc"]
        if f.get("aliases"):
            out["aliases"] = sorted(f["aliases"])
        if "default" in f:
            out["default"] = f["default"]
        out.update(_sorted(f, _FIELD_RESERVED))
        return out


def _logical(doc: dict[str, Any]) -> dict[str, Any]:
    if "logicalType" not in doc:
        return {}
    out = {"logicalType": doc["logicalType"]}
    if doc["logicalType"] == "decimal":
        out["precision"] = doc.get("precision")
        if doc.get("scale"):
            out["scale"] = doc["scale"]
    return out


def _sorted(doc: dict[str, Any], reserved: Iterable[str]) -> dict[str, Any]:
    skip = set(reserved)
    return {k: doc[k] for k in sorted(doc) if k not in skip}

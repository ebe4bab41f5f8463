"""Validate a JSON value against a parsed Avro record schema, reporting data paths.

fastavro's validator names errors by schema name ("ns.Person.age") and stops at the first;
a publisher needs the path inside *their* record ("address.zip") and every problem. We walk
records ourselves (presence, unknown fields, nesting) and let fastavro judge each leaf value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastavro.validation import ValidationError, validate

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str


def problems(value: Any, parsed: Any) -> list[Problem]:
    named: dict[str, Any] = parsed.get("__named_schemas", {}) if isinstance(parsed, dict) else {}
    out: list[Problem] = []
    _check(value, parsed, "", named, out)
    return out


def _resolve(schema: Any, named: dict[str, Any]) -> Any:
    if isinstance(schema, str) and schema not in _PRIMITIVES:
        return named.get(schema, schema)
    return schema


def _check(value: Any, schema: Any, path: str, named: dict[str, Any], out: list[Problem]) -> None:
    schema = _resolve(schema, named)
    if isinstance(schema, dict) and schema.get("type") == "record":
        if not isinstance(value, dict):
            out.append(
                Problem(path, f"expected an object (record {schema['name']}), got {_kind(value)}")
            )
            return
        known = {f["name"] for f in schema["fields"]}
        for extra in sorted(set(value) - known):
            out.append(Problem(_join(path, extra), "unknown field"))
        for f in schema["fields"]:
            fpath = _join(path, f["name"])
            if f["name"] not in value:
                if "default" not in f:
                    out.append(Problem(fpath, "missing required field"))
                continue
            _check(value[f["name"]], f["type"], fpath, named, out)
        return
    try:
        validate(value, _with_names(schema, named), raise_errors=True, strict=True)
    except ValidationError:
        out.append(Problem(path, f"{_kind(value)} value does not match type {_describe(schema)}"))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        out.append(Problem(path, f"invalid value: {exc}"))


def _with_names(schema: Any, named: dict[str, Any]) -> Any:
    # fastavro needs named types in scope to validate a fragment that references them.
    if isinstance(schema, dict):
        return {**schema, "__fastavro_parsed": True, "__named_schemas": named}
    if isinstance(schema, list):  # each branch carries the names (a branch may recurse)
        return [_with_names(_resolve(s, named), named) for s in schema]
    return schema


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _kind(value: Any) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
        type(None): "null",
        bytes: "bytes",
    }.get(type(value), "value")


def _describe(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union [" + ", ".join(_describe(s) for s in schema) + "]"
    if isinstance(schema, dict):
        t = schema.get("type")
        if t in ("record", "enum", "fixed"):
            return f"{t} {schema.get('name')}"
        if t == "array":
            return f"array<{_describe(schema.get('items'))}>"
        if t == "map":
            return f"map<{_describe(schema.get('values'))}>"
        return str(schema.get("logicalType") or t)
    return str(schema)

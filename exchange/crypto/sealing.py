"""The sealed (on-the-wire) form of a schema and the Avro encoding of single field values.

Pure functions. In the sealed schema each sensitive field keeps its name, becomes type
``"bytes"`` (no default) and carries ``"exchange.sealed": true`` and
``"exchange.original_type": <type JSON>`` (fully expanded, so it stands alone). Paths are
dotted field names; a nested path descends into a record-typed field (or a union of null and one
record), and the field inside that record is sealed.
"""

from __future__ import annotations

import copy
import io
import json
from functools import lru_cache
from typing import Any

import fastavro
from fastavro.schema import expand_schema

from exchange.errors import InvalidInput

SEALED = "exchange.sealed"
ORIGINAL_TYPE = "exchange.original_type"


def sealed_schema(schema: dict[str, Any], sensitive_paths: set[str]) -> dict[str, Any]:
    """The schema with every path in ``sensitive_paths`` turned into an envelope field."""
    if schema.get("type") != "record":
        raise InvalidInput("only record schemas can carry sealed fields")
    out = copy.deepcopy(schema)
    expanded: dict[str, Any] = expand_schema(schema)  # type: ignore[assignment]
    for path in sorted(sensitive_paths):
        parts = path.split(".")
        field = _field(out, parts, path)
        original = _field(expanded, parts, path)["type"]
        for attr in ("default", "type"):
            field.pop(attr, None)
        field["type"] = "bytes"
        field[SEALED] = True
        field[ORIGINAL_TYPE] = original
    try:
        fastavro.parse_schema(copy.deepcopy(out))
    except Exception as exc:  # fastavro raises several types for invalid schemas
        raise InvalidInput(f"sealed schema is not valid Avro: {exc}") from None
    return out


def sealed_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """Path → original type JSON of every sealed field of a sealed schema."""
    found: dict[str, Any] = {}
    _collect(schema, "", found)
    return found


def _collect(record: dict[str, Any], prefix: str, found: dict[str, Any]) -> None:
    for f in record.get("fields", []):
        path = f"{prefix}{f['name']}"
        if f.get(SEALED):
            found[path] = f[ORIGINAL_TYPE]
        elif (inner := _inline_record(f["type"])) is not None:
            _collect(inner, f"{path}.", found)


def _inline_record(t: Any) -> dict[str, Any] | None:
    """The record type of a field: an inline record, or the one record in a union."""
    if isinstance(t, dict) and t.get("type") == "record":
        return t
    if isinstance(t, list):
        records = [x for x in t if isinstance(x, dict) and x.get("type") == "record"]
        others = [x for x in t if x != "null" and x not in records]
        if len(records) == 1 and not others:
            return records[0]
    return None


def _field(record: dict[str, Any], parts: list[str], path: str) -> dict[str, Any]:
    for i, name in enumerate(parts):
        match = [f for f in record.get("fields", []) if f.get("name") == name]
        if not match:
            raise InvalidInput(f"sensitive path {path!r} is not a field of the schema")
        if i == len(parts) - 1:
            field: dict[str, Any] = match[0]
            return field
        inner = _inline_record(match[0]["type"])
        if inner is None:
            raise InvalidInput(
                f"sensitive path {path!r}: {name!r} is not an inline record (or null|record)"
            )
        record = inner
    raise InvalidInput("empty sensitive path")


# -- single values ------------------------------------------------------------------------------
@lru_cache(maxsize=1024)
def _parsed(type_json: str) -> Any:
    return fastavro.parse_schema(json.loads(type_json))


def type_key(avro_type: Any) -> str:
    """A stable string for an Avro type JSON (cache key)."""
    return json.dumps(avro_type, sort_keys=True, separators=(",", ":"))


# Callers pass the same type objects again and again (from one sealed schema): remember the
# parsed form by identity, keeping the object alive so its id cannot be reused.
_BY_ID: dict[int, tuple[Any, Any]] = {}


def parsed_type(avro_type: Any) -> Any:
    hit = _BY_ID.get(id(avro_type))
    if hit is not None and hit[0] is avro_type:
        return hit[1]
    try:
        parsed = _parsed(type_key(avro_type))
    except Exception as exc:  # fastavro raises several types for invalid schemas
        raise InvalidInput(
            f"sealed field type does not stand alone ({type(exc).__name__}); take the types "
            "from exchange.crypto.sealed_fields(<sealed schema>), which expands named types"
        ) from None
    if len(_BY_ID) > 4096:
        _BY_ID.clear()
    _BY_ID[id(avro_type)] = (avro_type, parsed)
    return parsed


def encode_value(avro_type: Any, value: Any) -> bytes:
    """Avro binary encoding of ``value`` under the type (raises InvalidInput if it does not fit)."""
    return encode_parsed(parsed_type(avro_type), value)


def encode_parsed(parsed: Any, value: Any) -> bytes:
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, parsed, value)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise InvalidInput(f"value does not match its type: {type(exc).__name__}") from None
    return buf.getvalue()


def decode_value(avro_type: Any, data: bytes) -> Any:
    return decode_parsed(parsed_type(avro_type), data)


def decode_parsed(parsed: Any, data: bytes) -> Any:
    buf = io.BytesIO(data)
    value = fastavro.schemaless_reader(buf, parsed, None)
    if buf.tell() != len(data):
        raise ValueError("trailing bytes after the value")
    return value


# -- record paths -------------------------------------------------------------------------------
_MISSING = object()


def get_path(record: dict[str, Any], parts: tuple[str, ...]) -> Any:
    """The value at a path, or ``MISSING`` if an enclosing record is absent/None."""
    cur: Any = record
    for name in parts:
        if not isinstance(cur, dict) or name not in cur:
            return _MISSING
        cur = cur[name]
    return cur


MISSING = _MISSING


def replace_path(record: dict[str, Any], parts: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of ``record`` with the value at ``parts`` replaced (or removed if ``MISSING``).

    Only the dicts along the path are copied; the rest is shared with the input.
    """
    out = dict(record)
    head, rest = parts[0], parts[1:]
    if not rest:
        if value is _MISSING:
            out.pop(head, None)
        else:
            out[head] = value
        return out
    out[head] = replace_path(record[head], rest, value)
    return out

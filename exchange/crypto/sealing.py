"""The sealed (on-the-wire) form of a schema and the Avro encoding of single field values.

Pure functions. In the sealed schema each sensitive field keeps its name, becomes type
``"bytes"`` (no default) and carries ``"exchange.sealed": true`` and
``"exchange.original_type": <type JSON>`` (fully expanded, so it stands alone). Sealing is a
property of a record *type's* field, so it holds wherever the type occurs: nested records,
array items, map values, union branches, reused named types, recursion. Paths and locations
are defined in :mod:`exchange.avro_paths`.
"""

from __future__ import annotations

import copy
import io
import json
import struct
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import fastavro

from exchange import avro_paths
from exchange.errors import InvalidInput

SEALED = "exchange.sealed"
ORIGINAL_TYPE = "exchange.original_type"

FieldRule = Callable[[str, Mapping[str, Any]], bool]  # (record full name, field) → seal it?


def sealed_schema(schema: dict[str, Any], sensitive_paths: set[str]) -> dict[str, Any]:
    """The schema with the fields at ``sensitive_paths`` turned into envelope fields.

    A path names a field of a record type; the field is sealed wherever that type occurs
    (see :func:`sealed_schema_where`).
    """
    if schema.get("type") != "record":
        raise InvalidInput("only record schemas can carry sealed fields")
    shape = avro_paths.compile_shape(schema)
    owners = {s.path: s for s in shape.slots}
    chosen: set[tuple[str, str]] = set()
    for path in sorted(sensitive_paths):
        slot = owners.get(path)
        if slot is None:
            raise InvalidInput(f"sensitive path {path!r} is not a field of the schema")
        chosen |= {(r.name, path.rpartition(".")[2]) for r in _records_of(shape, path)}
    return sealed_schema_where(schema, lambda rec, f: (rec, str(f.get("name"))) in chosen)


def _records_of(shape: avro_paths.Shape, path: str) -> list[avro_paths.Record]:
    found: list[avro_paths.Record] = []
    seen: set[int] = set()
    stack: list[Any] = [shape.root]
    while stack:
        n = stack.pop()
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        if isinstance(n, avro_paths.Record):
            found += [n for s in n.slots if s.path == path]
            stack += [s.child for s in n.slots]
        elif isinstance(n, avro_paths.Array):
            stack.append(n.items)
        elif isinstance(n, avro_paths.Map):
            stack.append(n.values)
        elif isinstance(n, avro_paths.Union):
            stack += [*n.records, n.array, n.map]
    return found


def sealed_schema_where(schema: Any, rule: FieldRule) -> dict[str, Any]:
    """The sealed form of ``schema`` (JSON or fastavro-parsed, references resolved).

    Sealing is defined over types: a field of a record type that ``rule`` picks is sealed in
    that type's one definition, so wherever the type occurs (array items, map values, union
    branches, reuse, recursion). The output stands alone: full names, each named type defined
    at its first use (a definition that lived inside a now-sealed field moves to the next use).
    """
    parsed = avro_paths.parsed_schema(schema)
    out = _Emitter(parsed.get("__named_schemas", {}) if isinstance(parsed, dict) else {}, rule)
    sealed = out.type(parsed, seal=True)
    try:
        fastavro.parse_schema(copy.deepcopy(sealed))
    except Exception as exc:  # fastavro raises several types for invalid schemas
        raise InvalidInput(f"sealed schema is not valid Avro: {exc}") from None
    if not isinstance(sealed, dict):
        raise InvalidInput("only record schemas can carry sealed fields")
    return sealed


class _Emitter:
    def __init__(self, named: Mapping[str, Any], rule: FieldRule) -> None:
        self.named, self.rule = named, rule
        self.done: set[str] = set()

    def type(self, t: Any, *, seal: bool) -> Any:
        if isinstance(t, str):
            if t not in self.named or t in self.done:
                return t
            return self.type(self.named[t], seal=seal)
        if isinstance(t, list):
            return [self.type(b, seal=seal) for b in t]
        if not isinstance(t, dict):
            return t
        kind = t.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            if t.get("name") in self.done:  # defined already in this output: refer to it
                return t.get("name")
            self.done.add(str(t.get("name")))
        out = {k: v for k, v in t.items() if not k.startswith("__")}
        if kind in ("record", "error"):
            name = str(t.get("name"))
            out["fields"] = [self.field(name, f, seal) for f in t.get("fields", [])]
        elif kind == "array":
            out["items"] = self.type(t.get("items"), seal=seal)
        elif kind == "map":
            out["values"] = self.type(t.get("values"), seal=seal)
        elif isinstance(kind, dict | list):
            out["type"] = self.type(kind, seal=seal)
        return out

    def field(self, record: str, f: Mapping[str, Any], seal: bool) -> dict[str, Any]:
        if not (seal and self.rule(record, f)):
            return {**f, "type": self.type(f.get("type"), seal=seal)}
        out = {k: v for k, v in f.items() if k not in ("type", "default")}
        out["type"] = "bytes"
        out[SEALED] = True
        # The original type stands alone: its own definitions, none of them sealed.
        out[ORIGINAL_TYPE] = _Emitter(self.named, self.rule).type(f.get("type"), seal=False)
        return out


class SealedFields(dict[str, Any]):
    """Path → original type of every sealed field, plus the shape that finds them in values."""

    def __init__(self, shape: avro_paths.Shape, types: dict[str, Any]) -> None:
        super().__init__(types)
        self.shape = shape


def sealed_fields(schema: Any) -> SealedFields:
    """Path → original type JSON of every sealed field of a sealed schema (at any depth)."""
    shape = avro_paths.compile_shape(schema, lambda rec, f: bool(f.get(SEALED)))
    return SealedFields(shape, {s.path: s.field[ORIGINAL_TYPE] for s in shape.marked()})


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
    # Fast path for the common sealed types (a name, an id, an amount, an optional phone
    # number): the bytes fastavro writes (tests/unit/crypto/test_sealing_fastpath.py),
    # without its call overhead; anything else goes to fastavro.
    fast = _fast_write(parsed, value)
    if fast is not None:
        return fast
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, parsed, value)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise InvalidInput(f"value does not match its type: {type(exc).__name__}") from None
    return buf.getvalue()


def decode_value(avro_type: Any, data: bytes) -> Any:
    return decode_parsed(parsed_type(avro_type), data)


def decode_parsed(parsed: Any, data: bytes) -> Any:
    kind = _fast_kind(parsed)
    if kind is not None:
        t, union = kind
        pos = 0
        if union is not None:
            branch, pos = _read_long(data, 0)
            if branch not in (0, 1):
                raise ValueError("union branch out of range")
            if union[branch] == "null":
                if pos != len(data):
                    raise ValueError("trailing bytes after the value")
                return None
        value, pos = _read_prim(t, data, pos)
        if pos != len(data):
            raise ValueError("trailing bytes after the value")
        return value
    buf = io.BytesIO(data)
    value = fastavro.schemaless_reader(buf, parsed, None)
    if buf.tell() != len(data):
        raise ValueError("trailing bytes after the value")
    return value


def decoder(parsed: Any) -> Callable[[bytes], Any]:
    """``decode_parsed`` bound to ``parsed``, specialised for the commonest sealed types (a
    plain string or integer): the same values and the same ValueErrors, fewer calls."""
    if type(parsed) is str and parsed == "string":
        return _decode_string
    if type(parsed) is str and parsed in _INT_RANGE:
        low, high = _INT_RANGE[parsed]

        def integer(data: bytes) -> int:
            # Up to three bytes (21 bits: within either range) read without a loop.
            size = len(data)
            if size == 1:
                z = data[0]
                if z < 0x80:
                    return (z >> 1) ^ -(z & 1)
            elif size == 2:
                b0, b1 = data
                if b0 >= 0x80 and b1 < 0x80:
                    z = (b0 & 0x7F) | b1 << 7
                    return (z >> 1) ^ -(z & 1)
            elif size == 3:
                b0, b1, b2 = data
                if b0 >= 0x80 and b1 >= 0x80 and b2 < 0x80:
                    z = (b0 & 0x7F) | (b1 & 0x7F) << 7 | b2 << 14
                    return (z >> 1) ^ -(z & 1)
            n, pos = _read_long(data, 0)
            if not low <= n < high:
                raise ValueError("integer out of range")
            if pos != len(data):
                raise ValueError("trailing bytes after the value")
            return n

        return integer
    return lambda data: decode_parsed(parsed, data)


def encoder(parsed: Any) -> Callable[[Any], bytes]:
    """``encode_parsed`` bound to ``parsed``, specialised for a plain string or integer: the
    same bytes and the same errors (anything unusual goes to ``encode_parsed``)."""
    if type(parsed) is str and parsed == "string":

        def string(value: Any) -> bytes:
            if type(value) is str:
                data: bytes = value.encode()
                n = len(data)
                return (bytes((n << 1,)) if n < 64 else _zigzag(n)) + data
            return encode_parsed(parsed, value)

        return string
    if type(parsed) is str and parsed in _INT_RANGE:
        low, high = _INT_RANGE[parsed]

        def integer(value: Any) -> bytes:
            if type(value) is int and low <= value < high:
                return _short_zigzag(value)
            return encode_parsed(parsed, value)

        return integer
    return lambda value: encode_parsed(parsed, value)


def _short_zigzag(n: int) -> bytes:
    """``_zigzag(n)``, without its loop for values of up to 21 bits."""
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return bytes((z,))
    if z < 0x4000:
        return bytes((z & 0x7F | 0x80, z >> 7))
    if z < 0x200000:
        return bytes((z & 0x7F | 0x80, (z >> 7) & 0x7F | 0x80, z >> 14))
    return _zigzag(n)


def _decode_string(data: bytes) -> str:
    if data and data[0] < 0x80:  # a length below 64: one byte
        z = data[0]
        n, pos = (z >> 1) ^ -(z & 1), 1
    else:
        n, pos = _read_long(data, 0)
    if n < 0 or pos + n != len(data):
        raise ValueError("length does not match the value")
    return data[pos:].decode()


def completed(parsed: Any, value: Any) -> Any:
    """``value`` as Avro reads it back under ``parsed``: defaults filled in at every depth and
    union branches settled, so sealing sees every field the writer will write (a sealed field
    has no default of its own)."""
    return decode_parsed(parsed, encode_parsed(parsed, value))


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


_INT_RANGE = {"int": (-(2**31), 2**31), "long": (-(2**63), 2**63)}
_PRIMS = frozenset({"string", "bytes", "int", "long", "double", "float", "boolean"})
_DOUBLE, _FLOAT = struct.Struct("<d"), struct.Struct("<f")


def _fast_kind(parsed: Any) -> tuple[str, list[str] | None] | None:
    """(primitive, the union if it is ["null", primitive] either way round) for the types
    the fast paths handle, else None."""
    if type(parsed) is str:
        return (parsed, None) if parsed in _PRIMS else None
    if type(parsed) is list and len(parsed) == 2 and "null" in parsed:
        other = parsed[1] if parsed[0] == "null" else parsed[0]
        if type(other) is str and other in _PRIMS:
            return other, parsed
    return None


def _fast_write(parsed: Any, value: Any) -> bytes | None:
    kind = _fast_kind(parsed)
    if kind is None:
        return None
    t, union = kind
    prefix = b""
    if union is not None:
        if value is None:
            return _zigzag(union.index("null"))
        prefix = _zigzag(1 - union.index("null"))
    body = _write_prim(t, value)
    return None if body is None else prefix + body


def _write_prim(t: str, value: Any) -> bytes | None:
    """The value's bytes if it is exactly of the primitive's Python type, else None."""
    kind = type(value)
    if t == "string" and kind is str:
        data: bytes = value.encode()
        return _zigzag(len(data)) + data
    if t == "bytes" and kind is bytes:
        raw: bytes = value
        return _zigzag(len(raw)) + raw
    if t in _INT_RANGE and kind is int:
        low, high = _INT_RANGE[t]
        return _zigzag(value) if low <= value < high else None
    if t == "double" and kind is float:
        return _DOUBLE.pack(value)
    if t == "boolean" and kind is bool:
        return b"\x01" if value else b"\x00"
    return None  # float (rounding), ints as doubles and the like: fastavro decides


def _read_prim(t: str, data: bytes, pos: int) -> tuple[Any, int]:
    if t == "string" or t == "bytes":
        n, pos = _read_long(data, pos)
        end = pos + n
        if n < 0 or end > len(data):
            raise ValueError("length does not match the value")
        raw = data[pos:end]
        return (raw.decode() if t == "string" else raw), end
    if t in _INT_RANGE:
        n, pos = _read_long(data, pos)
        low, high = _INT_RANGE[t]
        if not low <= n < high:
            raise ValueError("integer out of range")
        return n, pos
    if t == "double" or t == "float":
        fmt = _DOUBLE if t == "double" else _FLOAT
        if pos + fmt.size > len(data):
            raise ValueError("value is truncated")
        return fmt.unpack_from(data, pos)[0], pos + fmt.size
    if pos >= len(data) or data[pos] > 1:  # boolean
        raise ValueError("not a boolean")
    return data[pos] == 1, pos + 1


def _zigzag(n: int) -> bytes:
    """Avro's variable-length zig-zag encoding of a long."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag long at ``pos``: (value, position after it); ValueError if malformed."""
    z = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("malformed variable-length integer")
        b = data[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        if not b & 0x80:
            return (z >> 1) ^ -(z & 1), pos
        shift += 7

"""Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary body."""

from __future__ import annotations

import io
import struct
from typing import Any

import fastavro

from exchange.errors import InvalidInput

MAGIC = 0
_HEADER = struct.Struct(">bI")


def frame(schema_id: int, body: bytes) -> bytes:
    return _HEADER.pack(MAGIC, schema_id) + body


def unframe(data: bytes) -> tuple[int, bytes]:
    """Split a wire-format message into (schema id, Avro body)."""
    if len(data) < _HEADER.size:
        raise InvalidInput("message shorter than the Confluent wire-format header")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise InvalidInput(f"unknown wire-format magic byte {magic}")
    return schema_id, data[_HEADER.size :]


def encode(schema_id: int, parsed_schema: Any, value: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(_HEADER.pack(MAGIC, schema_id))
    fastavro.schemaless_writer(buf, parsed_schema, value)
    return buf.getvalue()


def decode_body(
    parsed_schema: Any, body: bytes, reader_schema: Any | None = None
) -> dict[str, Any]:
    result = fastavro.schemaless_reader(io.BytesIO(body), parsed_schema, reader_schema)
    if not isinstance(result, dict):
        raise InvalidInput("Avro body is not a record")
    return result

"""Publishing through the gateway's Avro path (Confluent wire format frames), for tests."""

from __future__ import annotations

import io
import struct
from typing import Any

import fastavro

from exchange.client import ExchangeClient

AVRO = "application/vnd.exchange.avro"


def frames(schema_id: int, schema: Any, records: list[tuple[str | None, Any]]) -> bytes:
    """The publish body: per record u32 key length (0xFFFFFFFF = none), key, u32 length, value."""
    parsed = fastavro.parse_schema(schema)
    out = b""
    for key, value in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, value)
        framed = b"\x00" + schema_id.to_bytes(4, "big") + buf.getvalue()
        k = key.encode() if key is not None else None
        out += struct.pack(">I", 0xFFFFFFFF) if k is None else struct.pack(">I", len(k)) + k
        out += struct.pack(">I", len(framed)) + framed
    return out


def publish_avro(
    client: ExchangeClient,
    topic: str,
    subject: str,
    schema: Any,
    records: list[tuple[str | None, Any]],
) -> Any:
    """Publish ``records`` encoded under the latest version of ``subject``; returns the answer."""
    sid = int(client.call("GET", f"/registry/subjects/{subject}/versions/latest")["id"])
    r = client.request(
        "POST",
        f"/v1/topics/{topic}/records",
        content=frames(sid, schema, records),
        headers={"Content-Type": AVRO},
    )
    assert r.status_code == 200, r.text
    return r.json()

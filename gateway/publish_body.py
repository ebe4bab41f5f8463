"""The publish request body, parsed the same way wherever it arrives (the gateway's publish
route, a county node's): decoding, JSON shape, Avro frames. Light on imports on purpose: the
county node's process loads it and must stay small."""

from __future__ import annotations

import struct
import zlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from exchange.errors import InvalidInput
from gateway import jsoncheck
from gateway.problem import BadEncoding, TooLarge, UnsupportedEncoding

AVRO_CONTENT_TYPE = "application/vnd.exchange.avro"


class RecordIn(BaseModel):
    key: str | None = Field(default=None, description="Partitioning key (UTF-8)")
    value: Any = Field(description="The record as JSON, matching the value schema")
    headers: dict[str, str] = Field(default_factory=dict)


class PublishIn(BaseModel):
    records: list[RecordIn] = Field(min_length=1)
    schema_version: Annotated[int, Field(strict=True, ge=1)] | Literal["latest"] = "latest"


def decoded(body: bytes, encoding: str, limit: int) -> bytes:
    """The body after its Content-Encoding: gzip inflated up to ``limit`` bytes and no
    further (a small bomb must not inflate to gigabytes), identity as it is, else refused."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding != "gzip":
        raise UnsupportedEncoding("Content-Encoding must be gzip or identity")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadEncoding("the body is not valid gzip") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise TooLarge(f"decompressed body exceeds {limit} bytes")
    if not inflater.eof or inflater.unused_data:
        raise BadEncoding("the gzip body is truncated or has trailing data")
    return out


# One JSON record as (key, value, headers), and a body's records with its schema version.
Plain = tuple[str | None, Any, dict[str, str]]
PlainBody = tuple[list[Plain], int | Literal["latest"]]


def json_records(body: bytes) -> PlainBody:
    """The records of a JSON publish body and its schema version; InvalidInput (naming every
    problem) for anything else."""
    raw = jsoncheck.loads(body)
    if fast := fast_shape(raw):
        return fast
    try:
        parsed = PublishIn.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {"path": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()
        ]
        raise InvalidInput("request body does not have the publish shape", errors=errors) from exc
    return [(r.key, r.value, r.headers) for r in parsed.records], parsed.schema_version


def fast_shape(raw: Any) -> PlainBody | None:
    """The common well-formed body, checked by hand: pydantic validating 500 nested records
    was a third of the publish path's CPU (and building its models for one record, a fifth
    of a small publish's parse). Anything unusual goes to pydantic for its errors."""
    if not isinstance(raw, dict) or set(raw) - {"records", "schema_version"}:
        return None
    records, version = raw.get("records"), raw.get("schema_version", "latest")
    if not isinstance(records, list) or not records:
        return None
    if not (version == "latest" or (type(version) is int and version >= 1)):
        return None
    out: list[Plain] = []
    for r in records:
        if not isinstance(r, dict) or "value" not in r or set(r) - {"key", "value", "headers"}:
            return None
        key, headers = r.get("key"), r.get("headers") or {}
        if key is not None and not isinstance(key, str):
            return None
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            return None
        out.append((key, r["value"], headers))
    return out, version


_U32 = struct.Struct(">I")
_NO_KEY = 0xFFFFFFFF


def frames(body: bytes) -> list[tuple[bytes | None, bytes]]:
    out: list[tuple[bytes | None, bytes]] = []
    pos = 0
    while pos < len(body):
        try:
            (klen,) = _U32.unpack_from(body, pos)
            pos += 4
            key = None if klen == _NO_KEY else body[pos : pos + klen]
            pos += 0 if klen == _NO_KEY else klen
            (vlen,) = _U32.unpack_from(body, pos)
            pos += 4
            value = body[pos : pos + vlen]
            pos += vlen
        except struct.error as exc:
            raise InvalidInput(f"truncated Avro frame at record {len(out)}") from exc
        if len(value) != vlen or (key is not None and len(key) != klen):
            raise InvalidInput(f"truncated Avro frame at record {len(out)}")
        out.append((key, value))
    if not out:
        raise InvalidInput("no records in body")
    return out

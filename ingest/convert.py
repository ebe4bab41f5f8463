"""Rows → Avro values → Confluent-framed bytes, one reason per bad row.

Reasons name the column and what was expected, never the value (it may be sensitive).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from fastavro import parse_schema, schemaless_writer

from ingest.infer import BOOLEANS, is_empty, parse_date, parse_timestamp, to_decimal
from ingest.mapping import FieldSpec, Mapping

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


class BadValue(ValueError):
    pass


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, float) and v.is_integer():
        return str(int(v))  # a spreadsheet's 13800138000.0 is the text 13800138000
    if isinstance(v, datetime | date):
        return v.isoformat()
    return str(v)


def _integer(bounds: tuple[int, int]) -> Callable[[Any], Any]:
    def conv(v: Any) -> int:
        if isinstance(v, bool):
            raise BadValue("not an integer")
        if isinstance(v, float | Decimal):
            if v != int(v):
                raise BadValue("not an integer")
            n = int(v)
        else:
            try:
                n = int(str(v).strip())
            except ValueError:
                raise BadValue("not an integer") from None
        if not bounds[0] <= n <= bounds[1]:
            raise BadValue("integer out of range")
        return n

    return conv


def _floating(v: Any) -> float:
    if isinstance(v, bool):
        raise BadValue("not a number")
    try:
        return float(v if isinstance(v, int | float | Decimal) else str(v).strip())
    except ValueError:
        raise BadValue("not a number") from None


def _boolean(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip()
    if s in BOOLEANS:
        return BOOLEANS[s]
    if s in ("1", "0"):
        return s == "1"
    raise BadValue("not true/false")


def _date(v: Any) -> date:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    d = parse_date(str(v))
    if d is None:
        raise BadValue("not a date (YYYY-MM-DD)")
    return d


def _timestamp(aware: bool) -> Callable[[Any], Any]:
    def conv(v: Any) -> datetime:
        ts = v if isinstance(v, datetime) else parse_timestamp(str(v))
        if ts is None:
            if (d := parse_date(str(v))) is None:
                raise BadValue("not a date-time (ISO 8601)")
            ts = datetime(d.year, d.month, d.day)
        if aware and ts.tzinfo is None:
            raise BadValue("date-time without a time zone offset")
        if not aware and ts.tzinfo is not None:
            ts = ts.astimezone(UTC).replace(tzinfo=None)
        return ts

    return conv


def _decimal(precision: int, scale: int) -> Callable[[Any], Any]:
    quantum = Decimal(1).scaleb(-scale)

    def conv(v: Any) -> Decimal:
        if isinstance(v, bool):
            raise BadValue("not a decimal number")
        try:
            d = to_decimal(v if not isinstance(v, float) else repr(v))
        except ValueError:
            raise BadValue("not a decimal number") from None
        if not d.is_finite():
            raise BadValue("not a finite number")
        q = d.quantize(quantum)
        if q != d:
            raise BadValue(f"more than {scale} decimal places")
        if len(q.as_tuple().digits) > precision:
            raise BadValue(f"more than {precision} digits")
        return q

    return conv


def converter(f: FieldSpec) -> Callable[[Any], Any]:
    base: Callable[[Any], Any]
    if f.type == "string":
        base = _text
    elif f.type == "long":
        base = _integer(_INT64)
    elif f.type == "int":
        base = _integer(_INT32)
    elif f.type in ("double", "float"):
        base = _floating
    elif f.type == "boolean":
        base = _boolean
    elif f.type == "date":
        base = _date
    elif f.type == "timestamp-millis":
        base = _timestamp(True)
    elif f.type == "local-timestamp-millis":
        base = _timestamp(False)
    else:
        base = _decimal(f.precision or 18, f.scale or 0)
    required = not f.nullable
    column = f.column

    def conv(v: Any) -> Any:
        if v is None or v == "" or (f.type != "string" and is_empty(v)):
            if required:
                raise BadValue(f"column {column!r} is empty but required")
            return None
        try:
            return base(v)
        except BadValue as exc:
            raise BadValue(f"column {column!r}: {exc}") from None

    return conv


class Encoder:
    """Row values → (key, Confluent wire-format value) under a registered schema id."""

    def __init__(self, mapping: Mapping, columns: Sequence[str], schema_id: int) -> None:
        where = {c: i for i, c in enumerate(columns)}
        missing = [f.column for f in mapping.fields if f.column not in where]
        if missing:
            from ingest.errors import SourceError

            raise SourceError(f"the source has no column(s) {', '.join(map(repr, missing))}")
        self.plan = [(f.name, where[f.column], converter(f)) for f in mapping.fields]
        self.kept = [(k["name"], k.get("default")) for k in mapping.kept]
        self.key_index = where[mapping.key_column] if mapping.key_column else None
        self.parsed = parse_schema(mapping.schema())
        self.prefix = b"\0" + struct.pack(">I", schema_id)

    def encode(self, values: Sequence[Any]) -> tuple[bytes | None, bytes]:
        record = {name: conv(values[i]) for name, i, conv in self.plan}
        for name, default in self.kept:
            record[name] = default
        buf = io.BytesIO()
        buf.write(self.prefix)
        try:
            schemaless_writer(buf, self.parsed, record)
        except (ValueError, TypeError, OverflowError) as exc:
            raise BadValue(f"does not fit the schema: {type(exc).__name__}") from None
        key = None
        if self.key_index is not None and values[self.key_index] not in (None, ""):
            key = _text(values[self.key_index]).encode()
        return key, buf.getvalue()

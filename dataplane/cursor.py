"""Opaque, tamper-evident cursors: per-partition next offsets, HMAC-signed by the gateway."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from exchange.errors import InvalidInput

Offsets = dict[int, int]
_VERSION = "1"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode(key: bytes, subscription: str, offsets: Offsets) -> str:
    return Signer(key, subscription).encode(offsets)


class Signer:
    """Cursors of one subscription: the payload is the compact JSON object of partition →
    offset in partition order (written without the JSON encoder: partitions and offsets are
    ints, so the text is the same), the HMAC keyed and fed the subscription once, for a
    stream that signs a cursor per event."""

    def __init__(self, key: bytes, subscription: str) -> None:
        self._mac = hmac.new(key, f"{subscription}.".encode(), hashlib.sha256)

    def encode(self, offsets: Offsets) -> str:
        body = ",".join(f'"{p}":{o}' for p, o in sorted(offsets.items()))
        payload = base64.urlsafe_b64encode(f"{{{body}}}".encode()).decode().rstrip("=")
        mac = self._mac.copy()
        mac.update(payload.encode())
        return f"{_VERSION}.{payload}.{mac.hexdigest()[:32]}"


def decode(key: bytes, subscription: str, cursor: str) -> Offsets:
    try:
        version, payload, mac = cursor.split(".")
    except ValueError as exc:
        raise InvalidInput("malformed cursor") from exc
    if version != _VERSION or not hmac.compare_digest(mac, _mac(key, subscription, payload)):
        raise InvalidInput("cursor is not valid for this subscription")
    raw = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return {int(p): int(o) for p, o in raw.items()}


def cursor_key(master_key: bytes) -> bytes:
    """The cursor-signing key, derived from the installation master key (same on replicas)."""
    return hmac.new(master_key, b"exchange/cursor/v1", hashlib.sha256).digest()


def offset_ranges(positions: Iterable[tuple[int, int]]) -> dict[str, list[int]]:
    """(partition, offset) pairs → {"<partition>": [lowest, highest]} for audit events."""
    out: dict[str, list[int]] = {}
    for partition, offset in positions:
        lo_hi = out.setdefault(str(partition), [offset, offset])
        lo_hi[0], lo_hi[1] = min(lo_hi[0], offset), max(lo_hi[1], offset)
    return out


def record_id(topic: str, partition: int, offset: int) -> str:
    """Stable across redeliveries, so subscribers can deduplicate."""
    return f"{topic}/{partition}/{offset}"


def _mac(key: bytes, subscription: str, payload: str) -> str:
    msg = f"{subscription}.{payload}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:32]


def start_time_ms(text: str) -> int:
    """An ISO-8601 start time as Kafka's epoch milliseconds (no offset means UTC)."""
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput("start must be 'earliest', 'latest' or an ISO-8601 timestamp") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    try:
        ms = (ts - _EPOCH) // timedelta(milliseconds=1)
    except OverflowError:
        ms = -1  # before year 1 in UTC: certainly before 1970
    if ms < 0:
        raise InvalidInput("start must not be before 1970-01-01T00:00:00Z (Kafka's epoch)")
    return ms

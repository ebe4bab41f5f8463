"""Reconcile the database index with the Kafka topic (the source of truth).

A batch Kafka acknowledged whose index commit then failed (a crash, a lost database) is still
in the topic. Before handing out indexes, the writer — holding the head lock — reads the
topic past what the index knows and adopts this log's messages that continue it: index
``head.size`` onwards, contiguous, each naming its predecessor's leaf hash. Anything else
(a gap, a broken chain) is left for ``verify`` to report, never silently repaired.

Reading is bounded: from the offset after the index's last message when the head knows it;
otherwise (a head written before it kept offsets) backwards from the end in growing windows
until a message of this log below ``head.size`` (or the topic's start) is reached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from audit.events import AuditEvent, BadEvent, decode
from audit.merkle import Hasher
from exchange.kafka.port import InRecord

INDEX_HEADER = "audit-index"
LOG_HEADER = "audit-log"
FIRST_WINDOW = 256


@dataclass(frozen=True)
class Adopted:
    event: AuditEvent
    entry: bytes
    leaf: bytes


def index_of(rec: InRecord, log_id: bytes) -> int | None:
    """The leaf index a message claims, if it belongs to this log."""
    headers = dict(rec.headers)
    if headers.get(LOG_HEADER) != log_id:
        return None
    try:
        return int(headers.get(INDEX_HEADER, b""))
    except ValueError:
        return None


def continuation(
    messages: Sequence[InRecord], log_id: str, size: int, last_hash: str, h: Hasher
) -> list[Adopted]:
    """This log's messages (in offset order) that extend an index of ``size`` leaves ending in
    ``last_hash``: the first message of each index wins, and the run stops at a gap or a
    message that does not chain."""
    want = log_id.encode()
    out: list[Adopted] = []
    prev = last_hash
    for rec in messages:
        idx = index_of(rec, want)
        if idx is None or idx < size + len(out):
            continue  # another log's, or an index we already have
        if idx > size + len(out):
            break  # a gap: not ours to fill
        try:
            ev = decode(rec.value)
        except BadEvent:
            break
        if ev.index != idx or ev.prev != prev:
            break
        leaf = h.leaf(rec.value)
        out.append(Adopted(ev, rec.value, leaf))
        prev = leaf.hex()
    return out


def reached_known(messages: Sequence[InRecord], log_id: str, size: int) -> bool:
    """Whether a backwards search has gone far enough: it met a message the index holds."""
    want = log_id.encode()
    return any((i := index_of(r, want)) is not None and i < size for r in messages)

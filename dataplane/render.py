"""Pure steps of rendering records for a subscription: decide, project, shape, audit events.

No I/O here: :class:`dataplane.delivery.Deliverer` reads the grant, the schemas and the
consents, decodes and opens each record once, and calls these to say what goes out.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

from consent.domain import NOT_REQUIRED, CatalogEntry, ConsentRef, Grant
from consent.policy import Decision, FieldLike, decide
from dataplane.cursor import offset_ranges, record_id
from dataplane.fields import project
from dataplane.store import Subscription
from exchange import avro_paths
from exchange.auditing import AuditRecord
from exchange.kafka.port import InRecord


class Opened(NamedTuple):  # a NamedTuple: one is made for every record delivered
    """One record decoded, with the sealed fields it may need already opened."""

    record: InRecord
    plain_id: int
    value: dict[str, Any]
    redacted: dict[str, str]  # path → "shredded" | "integrity"
    fields: Sequence[FieldLike]
    subjects: list[str]  # data-subject references found in the value
    schema: Any  # the plain schema (fastavro-parsed): where each path lives, for projection


@dataclass
class Rendered:
    records: list[dict[str, Any]] = field(default_factory=list)
    withheld: list[dict[str, Any]] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)  # every field path delivered
    subjects: set[str] = field(default_factory=set)  # data subjects delivered
    withheld_subjects: set[str] = field(default_factory=set)


def decision(
    sub: Subscription,
    entry: CatalogEntry,
    grant: Grant | None,
    fields: Sequence[FieldLike],
    now: datetime,
    consent: ConsentRef | None = None,
    *,
    upper_bound: bool = False,
) -> Decision:
    """The policy decision for ``sub``. ``upper_bound``: before per-subject consent is known —
    the grant as if it needed no consent, which can only allow more (consent only narrows);
    used to refuse hopeless subscriptions early and to choose which fields to open."""
    needs_consent = grant is not None and grant.requires_subject_consent
    if upper_bound and needs_consent and grant is not None:
        grant = replace(grant, requires_subject_consent=False)
    return decide(
        consumer_dept=sub.consumer,
        entry=entry,
        grant=grant,
        fields=fields,
        requested=set(sub.fields) if sub.fields else None,
        subject_consent=consent if needs_consent and not upper_bound else NOT_REQUIRED,
        now=now,
    )


def assemble(
    opened: Sequence[Opened],
    decide_for: Any,  # (Opened) -> Decision, memoised by the caller
    out: Rendered,
) -> Rendered:
    """Project each opened record onto what its decision allows; withhold the rest."""
    for o in opened:
        d: Decision = decide_for(o)
        if d.withhold or not d.allowed:
            out.withheld.append(withheld_item(o.record, d.reason or "no_consent"))
            out.withheld_subjects.update(o.subjects)
            continue
        out.records.append(record_item(o, d.allowed))
        out.fields |= d.allowed
        out.subjects.update(o.subjects)
    return out


def record_item(o: Opened, allowed: frozenset[str]) -> dict[str, Any]:
    r = o.record
    whole, native = _form(o.schema, allowed)
    value = o.value
    if whole is not None and value.keys() <= whole:
        pass  # every field of the record is allowed: the projection is the value itself
    else:
        value = project(value, allowed, o.schema)
    item: dict[str, Any] = {
        "record_id": record_id(r.topic, r.partition, r.offset),
        "key": r.key.decode("utf-8", "replace") if r.key is not None else None,
        "value": value if native else jsonable(value),
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp_ms,
        "schema_id": o.plain_id,
    }
    if o.redacted:
        shown = {p: why for p, why in o.redacted.items() if p in allowed}
        if shown:
            item["redacted"] = shown
    return item


# (id(schema), allowed) -> (schema kept alive, its field names if all are allowed, native?)
_FORMS: dict[tuple[int, frozenset[str]], tuple[Any, frozenset[str] | None, bool]] = {}


def _form(schema: Any, allowed: frozenset[str]) -> tuple[frozenset[str] | None, bool]:
    """What rendering a value of ``schema`` for ``allowed`` needs, worked out once: the
    top-level field names if every one of them is allowed whole (then projecting keeps the
    value as it is), else None; and whether decoded values are JSON already (no bytes, fixed
    or logical types anywhere in the schema, so :func:`jsonable` would change nothing)."""
    hit = _FORMS.get((id(schema), allowed))
    if hit is not None and hit[0] is schema:
        return hit[1], hit[2]
    root = avro_paths.shape_of(schema).root
    whole: frozenset[str] | None = None
    if isinstance(root, avro_paths.Record) and all(s.path in allowed for s in root.slots):
        whole = frozenset(root.by_name)
    text = json.dumps(schema, default=str)
    native = not any(t in text for t in ('"bytes"', '"fixed"', '"logicalType"'))
    if len(_FORMS) > 1024:
        _FORMS.clear()
    _FORMS[(id(schema), allowed)] = (schema, whole, native)
    return whole, native


def withheld_item(r: InRecord, reason: str) -> dict[str, Any]:
    return {"partition": r.partition, "offset": r.offset, "reason": reason}


def delivery_events(
    out: Rendered,
    sub: Subscription,
    grant: Grant | None,
    *,
    to: list[str],
    client_id: str,
    channel: str,
) -> list[AuditRecord]:
    """``records.delivered`` and ``records.withheld`` for one rendering (``to``: every
    subscription it goes to — a fan-out group names all of them)."""
    common = {
        "subscription": to[0] if len(to) == 1 else to,
        "agreement": grant.agreement_id if grant is not None else None,
        "channel": channel,
    }
    events = []
    if out.records:
        events.append(
            AuditRecord(
                "records.delivered",
                actor=client_id,
                department=sub.consumer,
                topic=sub.topic,
                data={
                    **common,
                    "offsets": _ranges(out.records),
                    "count": len(out.records),
                    "fields": sorted(out.fields),
                },
                subjects=tuple(sorted(out.subjects)),
            )
        )
    if out.withheld:
        events.append(
            AuditRecord(
                "records.withheld",
                actor=client_id,
                department=sub.consumer,
                topic=sub.topic,
                outcome="denied",
                data={
                    **common,
                    "offsets": _ranges(out.withheld),
                    "count": len(out.withheld),
                    "reasons": sorted({w["reason"] for w in out.withheld}),
                },
                subjects=tuple(sorted(out.withheld_subjects)),
            )
        )
    return events


def _ranges(items: list[dict[str, Any]]) -> dict[str, list[int]]:
    return offset_ranges((it["partition"], it["offset"]) for it in items)


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime | date | time_of_day):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    return value

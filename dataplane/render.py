"""Pure steps of rendering records for a subscription: decide, project, shape, audit events.

No I/O here: :class:`dataplane.delivery.Deliverer` reads the grant, the schemas and the
consents, decodes and opens each record once, and calls these to say what goes out.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from functools import partial
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


# Opened((record, plain_id, ...)) without the NamedTuple's Python-level __new__ (per record).
new_opened: Callable[[tuple[Any, ...]], Opened] = partial(tuple.__new__, Opened)


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
    return shape(choose(opened, decide_for, out), out)


def choose(
    opened: Sequence[Opened],
    decide_for: Any,  # (Opened) -> Decision, memoised by the caller
    out: Rendered,
) -> list[tuple[Opened, frozenset[str]]]:
    """The first half of :func:`assemble`: which records go, each with the fields it may
    carry; the others withheld in ``out``, whose fields and subjects are filled in (all the
    audit events need)."""
    chosen: list[tuple[Opened, frozenset[str]]] = []
    last: Decision | None = None
    for o in opened:
        d: Decision = decide_for(o)
        if d.withhold or not d.allowed:
            out.withheld.append(withheld_item(o.record, d.reason or "no_consent"))
            out.withheld_subjects.update(o.subjects)
            continue
        chosen.append((o, d.allowed))
        if d is not last:  # a page mostly has one decision: add its fields once
            out.fields |= d.allowed
            last = d
        if o.subjects:
            out.subjects.update(o.subjects)
    return chosen


def shape(chosen: list[tuple[Opened, frozenset[str]]], out: Rendered) -> Rendered:
    """The second half of :func:`assemble`: each chosen record as it goes out."""
    out.records += [record_item(o, allowed) for o, allowed in chosen]
    return out


def record_item(o: Opened, allowed: frozenset[str]) -> dict[str, Any]:
    r = o.record
    form = _form(o.schema, allowed)
    value = o.value
    if form.whole is not None and value.keys() <= form.whole:
        pass  # every field of the record is allowed: the projection is the value itself
    else:
        value = project(value, allowed, o.schema)
    if not form.native:
        value = jsonable(value)
    elif form.floats:
        value = _finite_fields(value, form.floats)
    item: dict[str, Any] = {
        "record_id": record_id(r.topic, r.partition, r.offset),
        "key": r.key.decode("utf-8", "replace") if r.key is not None else None,
        "value": value,
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


class _Form(NamedTuple):
    """How values of one schema are rendered for one allowed set (worked out once)."""

    schema: Any  # kept alive: the cache is keyed by its id
    whole: frozenset[str] | None  # top-level names if every one is allowed whole, else None
    native: bool  # decoded values are JSON as they are, but for ``floats``
    floats: tuple[str, ...]  # top-level float/double fields: non-finite values become strings


_FORMS: dict[tuple[int, frozenset[str]], _Form] = {}
_FLOAT_TYPES = ('"double"', '"float"')


def _form(schema: Any, allowed: frozenset[str]) -> _Form:
    """What rendering a value of ``schema`` for ``allowed`` needs: the top-level field names
    if every one of them is allowed whole (then projecting keeps the value as it is); whether
    decoded values are JSON already (no bytes, fixed or logical types anywhere, so
    :func:`jsonable` would change nothing) except for float/double fields, and those if they
    are all top-level fields (a float anywhere else: the :func:`jsonable` walk)."""
    hit = _FORMS.get((id(schema), allowed))
    if hit is not None and hit.schema is schema:
        return hit
    root = avro_paths.shape_of(schema).root
    whole: frozenset[str] | None = None
    floats: list[str] = []
    counted = 0
    if isinstance(root, avro_paths.Record):
        if all(s.path in allowed for s in root.slots):
            whole = frozenset(root.by_name)
        for s in root.slots:
            n = _float_branches(s.field.get("type"))
            if n:
                floats.append(s.name)
                counted += n
    text = json.dumps(schema, default=str)
    native = not any(t in text for t in ('"bytes"', '"fixed"', '"logicalType"'))
    if isinstance(schema, dict):  # fastavro's parsed form repeats named types under "__"
        text = json.dumps({k: v for k, v in schema.items() if not k.startswith("__")}, default=str)
    native = native and counted == sum(text.count(t) for t in _FLOAT_TYPES)
    form = _Form(schema, whole, native, tuple(floats) if native else ())
    if len(_FORMS) > 1024:
        _FORMS.clear()
    _FORMS[(id(schema), allowed)] = form
    return form


def _float_branches(t: Any) -> int:
    """How many float/double types a top-level field's type names: itself, or the branches
    of a union of primitives (0 for anything else)."""
    if t in ("double", "float"):
        return 1
    if isinstance(t, list) and all(isinstance(b, str) for b in t):
        return sum(b in ("double", "float") for b in t)
    return 0


def _finite_fields(value: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """``value`` with non-finite floats in the named fields written as :func:`non_finite`
    says (a copy only if one is there)."""
    out: dict[str, Any] | None = None
    for name in names:
        x = value.get(name)
        if type(x) is float and not math.isfinite(x):
            if out is None:
                out = dict(value)
            out[name] = non_finite(x)
    return value if out is None else out


def non_finite(x: float) -> str:
    """A NaN or infinite float as delivered JSON writes it: ``"NaN"``, ``"Infinity"``,
    ``"-Infinity"`` (JSON has no such numbers; protobuf's JSON mapping writes these strings).
    Avro-framed publishes can carry them; JSON publishes cannot."""
    if x != x:
        return "NaN"
    return "Infinity" if x > 0 else "-Infinity"


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
    delivered: Sequence[InRecord] | None = None,
) -> list[AuditRecord]:
    """``records.delivered`` and ``records.withheld`` for one rendering (``to``: every
    subscription it goes to — a fan-out group names all of them). ``delivered``: the records
    that go, when their items are not shaped yet (:func:`choose`); else ``out.records``."""
    common = {
        "subscription": to[0] if len(to) == 1 else to,
        "agreement": grant.agreement_id if grant is not None else None,
        "channel": channel,
    }
    events = []
    went = (
        [(it["partition"], it["offset"]) for it in out.records]
        if delivered is None
        else [(r.partition, r.offset) for r in delivered]
    )
    if went:
        events.append(
            AuditRecord(
                "records.delivered",
                actor=client_id,
                department=sub.consumer,
                topic=sub.topic,
                data={
                    **common,
                    "offsets": offset_ranges(went),
                    "count": len(went),
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
    if isinstance(value, float) and not math.isfinite(value):
        return non_finite(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime | date | time_of_day):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    return value

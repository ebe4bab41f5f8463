"""The delivery path: for one subscription and a batch of Kafka records, decide per record
which fields may go (consent.policy), open only those sealed fields (exchange.crypto),
project the value, and audit what was delivered and what was withheld.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from typing import Any
from uuid import UUID

from exchange import wire
from exchange.auditing import AuditRecord
from exchange.delivery.cursor import offset_ranges, record_id
from exchange.delivery.store import Subscription
from exchange.errors import ExchangeError, Forbidden, NotFound
from exchange.kafka.client import InRecord
from gateway.container import Services
from gateway.services.fields import get_path, project, subject_paths
from gateway.services.publisher import SCHEMA_ID_HEADER

GRANT_TTL_S = 1.0  # revocation must bite within 2 s; grants are re-read at least every second


@dataclass(frozen=True)
class Access:
    entry: Any
    grant: Any | None
    checked_at: float


@dataclass
class Rendered:
    records: list[dict[str, Any]] = field(default_factory=list)
    withheld: list[dict[str, Any]] = field(default_factory=list)


class Deliverer:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._access: dict[tuple[str, str], Access] = {}
        self._sealed_by_wire: dict[int, dict[str, Any]] = {}
        self._verdicts: dict[tuple[str, str, frozenset[str] | None], tuple[float, bool]] = {}
        self._lock = threading.Lock()

    # -- access --------------------------------------------------------------------------
    def access(self, sub: Subscription) -> Access:
        """Catalog entry and current grant, re-read at most every GRANT_TTL_S seconds."""
        key = (sub.consumer, sub.topic)
        now = time.monotonic()
        with self._lock:
            cached = self._access.get(key)
        if cached is not None and now - cached.checked_at < GRANT_TTL_S:
            return cached
        entry = self.svc.extras["catalog"].get(sub.topic)
        grant = self.svc.extras["agreements"].current_grant(
            sub.consumer, sub.topic, datetime.now(UTC)
        )
        fresh = Access(entry, grant, now)
        with self._lock:
            self._access[key] = fresh
        return fresh

    def _sealed(self, wire_id: int) -> dict[str, Any]:
        """Sealed path → original type, read from the wire (sealed) schema itself, so a
        record is opened exactly where it was sealed; schemas are immutable, so cache."""
        with self._lock:
            hit = self._sealed_by_wire.get(wire_id)
        if hit is None:
            from exchange.crypto.sealing import sealed_fields as sealed_types

            schema = json.loads(self.svc.extras["registry"].by_id(wire_id).schema)
            hit = sealed_types(schema)
            with self._lock:
                self._sealed_by_wire[wire_id] = hit
        return hit

    def _open_to(self, sub: Subscription, acc: Access) -> bool:
        """May ``sub`` receive any field now? Decided once per grant refresh, not per call:
        1,639 open streams re-check every second."""
        key = (sub.consumer, sub.topic, sub.fields)
        with self._lock:
            hit = self._verdicts.get(key)
        if hit is not None and hit[0] == acc.checked_at:
            return hit[1]
        verdict = bool(
            self._decision(sub, acc, self._latest_fields(acc.entry), upper_bound=True).allowed
        )
        with self._lock:
            self._verdicts[key] = (acc.checked_at, verdict)
        return verdict

    def allowed_now(self, sub: Subscription) -> bool | None:
        """The cached verdict if it is fresh (no I/O, safe on the event loop), else None."""
        with self._lock:
            acc = self._access.get((sub.consumer, sub.topic))
            hit = self._verdicts.get((sub.consumer, sub.topic, sub.fields))
        if acc is None or hit is None or hit[0] != acc.checked_at:
            return None
        if time.monotonic() - acc.checked_at >= GRANT_TTL_S:
            return None
        return hit[1]

    def forget(self, consumer: str, topic: str) -> None:
        """Drop the cached grant of a pair (an agreement changed in this process)."""
        with self._lock:
            self._access.pop((consumer, topic), None)

    def ensure_allowed(self, sub: Subscription, who_client: str) -> Access:
        """Fail unless the subscription may currently receive at least one field."""
        acc = self.access(sub)
        if not self._open_to(sub, acc):
            self.svc.audit.append(
                AuditRecord(
                    "delivery.denied",
                    actor=who_client,
                    department=sub.consumer,
                    topic=sub.topic,
                    outcome="denied",
                    data={"subscription": sub.id},
                )
            )
            raise Forbidden("no active sharing agreement allows this subscription")
        return acc

    def _latest_fields(self, entry: Any) -> list[Any]:
        registry = self.svc.extras["registry"]
        try:
            return list(registry.by_id(registry.version(entry.value_subject, "latest").id).fields)
        except NotFound:
            return []

    def _decision(
        self,
        sub: Subscription,
        acc: Access,
        fields: list[Any],
        consent: Any = None,
        *,
        upper_bound: bool = False,
    ) -> Any:
        """The policy decision. ``upper_bound``: before per-subject consent is known — the
        grant as if it needed no consent, which can only allow more (consent only narrows);
        used to refuse hopeless subscriptions early and to choose which fields to open."""
        from consent.domain import NOT_REQUIRED
        from consent.policy import decide

        grant = acc.grant
        needs_consent = bool(getattr(grant, "requires_subject_consent", False))
        if upper_bound and needs_consent and grant is not None:
            grant = replace(grant, requires_subject_consent=False)
        return decide(
            consumer_dept=sub.consumer,
            entry=acc.entry,
            grant=grant,
            fields=fields,
            requested=set(sub.fields) if sub.fields else None,
            subject_consent=consent if needs_consent and not upper_bound else NOT_REQUIRED,
            now=datetime.now(UTC),
        )

    # -- rendering -----------------------------------------------------------------------
    def render(
        self,
        sub: Subscription,
        records: list[InRecord],
        *,
        client_id: str,
        channel: str,
        subscriptions: list[str] | None = None,
    ) -> Rendered:
        """Render ``records`` for ``sub``; ``subscriptions``: every subscription this one
        rendering goes to (a fan-out group), named in the audit events."""
        if not records:
            return Rendered()
        acc = self.access(sub)
        registry = self.svc.extras["registry"]
        crypto = self.svc.extras.get("crypto")
        decoded: list[tuple[InRecord, int, dict[str, Any], dict[str, str], list[Any]]] = []
        out = Rendered()
        bases: dict[int, Any] = {}
        for r in records:
            try:
                wire_id, body = wire.unframe(r.value)
                plain_id = _plain_id(r, wire_id)
                fields = list(registry.by_id(plain_id).fields)
                value = wire.decode_body(registry.by_id(wire_id).parsed, body)
            except (ExchangeError, ValueError, EOFError) as exc:
                if isinstance(exc, ExchangeError) and exc.code == "dependency_unavailable":
                    raise
                out.withheld.append(_withheld(r, "undecodable"))
                continue
            # Decisions depend on the schema (and the subject's consent), not the record.
            base = bases.get(plain_id)
            if base is None:
                base = bases[plain_id] = self._decision(sub, acc, fields, upper_bound=True)
            if base.withhold or not base.allowed:
                out.withheld.append(_withheld(r, base.reason or "not_allowed"))
                continue
            sealed = self._sealed(wire_id) if wire_id != plain_id else {}
            redacted: dict[str, str] = {}
            if sealed:
                need = (set(base.allowed) | set(subject_paths(fields))) & set(sealed)
                if crypto is None:
                    raise ExchangeError(
                        "field encryption is not configured", code="dependency_unavailable"
                    )
                opened = crypto.open(
                    topic=sub.topic,
                    sealed_schema_id=wire_id,
                    key=r.key,
                    record=value,
                    fields=sealed,
                    granted=need,
                )
                value, redacted = opened.value, dict(opened.redacted)
            decoded.append((r, plain_id, value, redacted, fields))

        consents: dict[str, Any] = {}
        if acc.grant is not None and getattr(acc.grant, "requires_subject_consent", False):
            subjects = {
                str(s)
                for _, _, v, _, f in decoded
                for p in subject_paths(f)
                if (s := get_path(v, p)) is not None
            }
            consents = self.svc.extras["consents"].active_consents(
                sub.consumer, sub.topic, subjects, datetime.now(UTC)
            )

        finals: dict[tuple[int, Any, Any], Any] = {}
        delivered_fields: set[str] = set()
        delivered_subjects: set[str] = set()
        withheld_subjects: set[str] = set()
        for r, plain_id, value, redacted, fields in decoded:
            found = [str(x) for p in subject_paths(fields) if (x := get_path(value, p)) is not None]
            consent = consents.get(found[0]) if found else None
            dkey = (plain_id, getattr(consent, "consent_id", None), getattr(consent, "version", 0))
            decision = finals.get(dkey)
            if decision is None:
                decision = finals[dkey] = self._decision(sub, acc, fields, consent)
            if decision.withhold or not decision.allowed:
                out.withheld.append(_withheld(r, decision.reason or "no_consent"))
                withheld_subjects.update(found)
                continue
            allowed = frozenset(decision.allowed)
            item: dict[str, Any] = {
                "record_id": record_id(r.topic, r.partition, r.offset),
                "key": r.key.decode("utf-8", "replace") if r.key is not None else None,
                "value": _jsonable(project(value, allowed)),
                "partition": r.partition,
                "offset": r.offset,
                "timestamp": r.timestamp_ms,
                "schema_id": plain_id,
            }
            shown = {p: why for p, why in redacted.items() if p in allowed}
            if shown:
                item["redacted"] = shown
            out.records.append(item)
            delivered_fields |= allowed
            delivered_subjects.update(found)
        self._audit(
            subscriptions or [sub.id],
            sub,
            acc,
            out,
            client_id,
            channel,
            delivered_fields,
            delivered_subjects,
            withheld_subjects,
        )
        return out

    def _audit(
        self,
        to: list[str],
        sub: Subscription,
        acc: Access,
        out: Rendered,
        client_id: str,
        channel: str,
        fields: set[str],
        subjects: set[str],
        withheld_subjects: set[str],
    ) -> None:
        events = []
        agreement = getattr(acc.grant, "agreement_id", None)
        if out.records:
            events.append(
                AuditRecord(
                    "records.delivered",
                    actor=client_id,
                    department=sub.consumer,
                    topic=sub.topic,
                    data={
                        "subscription": to[0] if len(to) == 1 else to,
                        "agreement": agreement,
                        "channel": channel,
                        "offsets": _ranges(out.records),
                        "count": len(out.records),
                        "fields": sorted(fields),
                    },
                    subjects=tuple(sorted(subjects)),
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
                        "subscription": to[0] if len(to) == 1 else to,
                        "agreement": agreement,
                        "channel": channel,
                        "offsets": _ranges(out.withheld),
                        "count": len(out.withheld),
                        "reasons": sorted({w["reason"] for w in out.withheld}),
                    },
                    subjects=tuple(sorted(withheld_subjects)),
                )
            )
        if events:
            self.svc.audit.append_many(events)


def _plain_id(r: InRecord, wire_id: int) -> int:
    for k, v in r.headers:
        if k == SCHEMA_ID_HEADER:
            return int(v)
    return wire_id


def _withheld(r: InRecord, reason: str) -> dict[str, Any]:
    return {"partition": r.partition, "offset": r.offset, "reason": reason}


def _ranges(items: list[dict[str, Any]]) -> dict[str, list[int]]:
    return offset_ranges((it["partition"], it["offset"]) for it in items)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime | date | time_of_day):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    return value

"""The delivery use case: for one subscription and a batch of Kafka records, decide which
fields may go (consent.policy), decode each record and open only those sealed fields in one
pass (exchange.crypto), project, and audit what was delivered and what was withheld.

The pure steps live in :mod:`dataplane.render`; this class does the reads and the caching.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from consent.domain import CatalogEntry, Grant
from consent.policy import Decision
from dataplane.fields import get_path, subject_paths
from dataplane.ports import (
    CatalogPort,
    ConsentsPort,
    GrantsPort,
    KeyGenerations,
    SchemasPort,
    SealerPort,
)
from dataplane.publish import SCHEMA_ID_HEADER
from dataplane.render import (
    Opened,
    Rendered,
    choose,
    decision,
    delivery_events,
    new_opened,
    shape,
    withheld_item,
)
from dataplane.store import Subscription
from exchange import wire
from exchange.auditing import AuditRecord, AuditSink
from exchange.crypto.sealing import sealed_fields as sealed_types
from exchange.errors import DependencyUnavailable, ExchangeError, Forbidden
from exchange.kafka.port import InRecord
from schemas.classification import FieldInfo
from schemas.registry import StoredSchema

GRANT_TTL_S = 1.0  # revocation must bite within 2 s; grants are re-read at least every second
# From this many records a rendering appends its audit events while it shapes the records
# (a thread of its own); smaller ones (live SSE batches) append first, as they always did.
OVERLAP_AUDIT_FROM = 64


class GrantLookup(Protocol):
    def current_grant(self, consumer_dept: str, topic: str, now: datetime) -> Grant | None: ...


class SchemaLookup(Protocol):
    def by_id(self, schema_id: int) -> StoredSchema: ...

    def latest_fields(self, subject: str) -> list[FieldInfo] | None: ...


@dataclass(frozen=True)
class Sources:
    """Where a subscription's topic is described, decided and opened: this site's catalog,
    agreements, registry and keys — or, for a topic mirrored from its owner site, the
    replicated catalog entry and agreement state, the owner's schemas and the data keys the
    owner releases (dataplane.federation). ``origin``: "" here, else the owner site."""

    origin: str
    catalog: CatalogPort
    grants: GrantLookup
    schemas: SchemaLookup
    sealer: SealerPort | None


RemoteSources = Callable[[Subscription], Sources | None]


@dataclass(frozen=True)
class Access:
    entry: CatalogEntry
    grant: Grant | None
    checked_at: float


@dataclass(frozen=True)
class Prepared:
    """Records decoded and opened ahead of the request that delivers them
    (:meth:`Deliverer.prepare`; the delivery loop's read-ahead): nothing decided for delivery,
    nothing audited. :meth:`Deliverer.render` uses it only while it would open them the same
    way now — the same upper-bound decision (withheld or not, fields opened) for every schema
    pair under the current grant and clock, and no ready data key taken out since (shredding,
    rotation: the key generation); otherwise it decodes and opens them afresh."""

    sub: Subscription
    records: list[InRecord]
    opened: list[Opened]
    withheld: list[dict[str, Any]]  # undecodable, or withheld by the grant for every subject
    plans: dict[tuple[int, int], _Plan]  # (plain id, wire id) -> how its records were opened
    sources: Sources
    keys: int  # the sealer's key generation before opening started


class Deliverer:
    def __init__(
        self,
        *,
        catalog: CatalogPort,
        grants: GrantsPort,
        consents: ConsentsPort,
        schemas: SchemasPort,
        sealer: SealerPort | None,
        audit: AuditSink,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        remote: RemoteSources | None = None,
    ) -> None:
        self.catalog = catalog
        self.grants = grants
        self.consents = consents
        self.schemas = schemas
        self.sealer = sealer
        self.audit = audit
        self.clock = clock
        self._access: dict[tuple[str, str], Access] = {}
        self._local = Sources("", catalog, grants, schemas, sealer)
        self._remote = remote
        self._sealed_by_wire: dict[tuple[str, int], dict[str, Any]] = {}
        self._verdicts: dict[tuple[str, str, frozenset[str] | None], tuple[float, bool]] = {}
        self._lock = threading.Lock()
        # Approvals and revocations made through this process bite at once; changes made
        # elsewhere within the grant cache's second.
        grants.on_change(self.forget)

    def sources(self, sub: Subscription) -> Sources:
        """This site's stores, or the owner site's replicated ones for a mirrored topic."""
        if self._remote is not None and (remote := self._remote(sub)) is not None:
            return remote
        return self._local

    # -- access --------------------------------------------------------------------------
    def access(self, sub: Subscription, max_age: float = GRANT_TTL_S) -> Access:
        """Catalog entry and current grant, re-read when older than ``max_age`` seconds."""
        key = (sub.consumer, sub.topic)
        now = time.monotonic()
        with self._lock:
            cached = self._access.get(key)
        if cached is not None and now - cached.checked_at < max_age:
            return cached
        src = self.sources(sub)
        entry = src.catalog.get(sub.topic)
        grant = src.grants.current_grant(sub.consumer, sub.topic, self.clock())
        fresh = Access(entry, grant, now)
        with self._lock:
            self._access[key] = fresh
        return fresh

    def _open_to(self, sub: Subscription, acc: Access) -> bool:
        """May ``sub`` receive any field now? Decided once per grant refresh, not per call:
        1,639 open streams re-check every second."""
        key = (sub.consumer, sub.topic, sub.fields)
        with self._lock:
            hit = self._verdicts.get(key)
        if hit is not None and hit[0] == acc.checked_at:
            return hit[1]
        fields = self._latest_fields(self.sources(sub), acc.entry)
        verdict = bool(
            decision(sub, acc.entry, acc.grant, fields, self.clock(), upper_bound=True).allowed
        )
        with self._lock:
            self._verdicts[key] = (acc.checked_at, verdict)
        return verdict

    def verdict(self, sub: Subscription, max_age: float = GRANT_TTL_S) -> bool:
        """May ``sub`` receive at least one field now (the grant re-read if older than
        ``max_age``)? Refreshes what :meth:`allowed_now` answers from; audits nothing
        (:meth:`ensure_allowed` does)."""
        return self._open_to(sub, self.access(sub, max_age))

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
            self.audit.append(
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

    def _latest_fields(self, src: Sources, entry: CatalogEntry) -> list[Any]:
        return list(src.schemas.latest_fields(entry.value_subject) or [])

    def _sealed(self, src: Sources, wire_id: int) -> dict[str, Any]:
        """Sealed path → original type, read from the wire (sealed) schema itself, so a
        record is opened exactly where it was sealed; schemas are immutable, so cache."""
        with self._lock:
            hit = self._sealed_by_wire.get((src.origin, wire_id))
        if hit is None:
            hit = sealed_types(json.loads(src.schemas.by_id(wire_id).schema))
            with self._lock:
                self._sealed_by_wire[(src.origin, wire_id)] = hit
        return hit

    # -- rendering -----------------------------------------------------------------------
    def render(
        self,
        sub: Subscription,
        records: list[InRecord],
        *,
        client_id: str,
        channel: str,
        subscriptions: list[str] | None = None,
        prepared: Prepared | None = None,
    ) -> Rendered:
        """Render ``records`` for ``sub`` and audit it; ``subscriptions``: every subscription
        this one rendering goes to (a fan-out group), named in the audit events.
        ``prepared``: these records decoded and opened ahead (:meth:`prepare`), used if they
        would be opened the same way now."""
        if not records:
            return Rendered()
        acc = self.access(sub)
        now = self.clock()
        out = Rendered()
        if prepared is not None and self._still_opens(prepared, sub, records, acc, now):
            opened = prepared.opened
            out.withheld += prepared.withheld
        else:
            opened = self._open_all(sub, acc, records, now, out, {})
        consents: dict[str, Any] = {}
        if acc.grant is not None and acc.grant.requires_subject_consent:
            subjects = {s for o in opened for s in o.subjects}
            consents = self.consents.active_consents(sub.consumer, sub.topic, subjects, now)

        # Decisions depend on the schema and the subject's consent, not on the record.
        memo: dict[tuple[int, Any, int], Decision] = {}

        def decide_for(o: Opened) -> Decision:
            if not consents:  # no consent to look up: one decision per schema
                d = memo.get((o.plain_id, None, 0))
                if d is not None:
                    return d
            consent = consents.get(o.subjects[0]) if o.subjects else None
            key = (o.plain_id, getattr(consent, "consent_id", None), getattr(consent, "version", 0))
            if key not in memo:
                memo[key] = decision(sub, acc.entry, acc.grant, o.fields, now, consent)
            return memo[key]

        chosen = choose(opened, decide_for, out)
        to = subscriptions or [sub.id]
        if len(chosen) < OVERLAP_AUDIT_FROM:
            shape(chosen, out)
            events = delivery_events(
                out, sub, acc.grant, to=to, client_id=client_id, channel=channel
            )
            if events:
                self.audit.append_many(events)
            return out
        # A large page: its audit events are known once the records are chosen, so the
        # durable append (mostly waiting on the log's disk and Kafka) runs while the records
        # are shaped; the page is returned only once the append succeeded (fail closed).
        events = delivery_events(
            out,
            sub,
            acc.grant,
            to=to,
            client_id=client_id,
            channel=channel,
            delivered=[o.record for o, _ in chosen],
        )
        ctx = contextvars.copy_context()  # the append's trace spans under this rendering's
        audited = _AUDITS.submit(ctx.run, self.audit.append_many, events)
        try:
            shape(chosen, out)
        finally:
            audited.result()  # raises what the append raised: no page without its events
        return out

    # -- ahead of the request ------------------------------------------------------------
    def prepare(self, sub: Subscription, records: list[InRecord]) -> Prepared | None:
        """Decode ``records`` and open what ``sub`` may need of them, as :meth:`render` would,
        without deciding what goes out or auditing anything (read-ahead of a backlog). None
        when the sealer cannot tell whether keys were taken out since (no key generation):
        then render does it all at request time."""
        acc = self.access(sub)
        src = self.sources(sub)
        keys = _key_generation(src)
        if keys is None:
            return None
        out = Rendered()
        plans: dict[tuple[int, int], _Plan] = {}
        opened = self._open_all(sub, acc, records, self.clock(), out, plans)
        return Prepared(sub, records, opened, out.withheld, plans, src, keys)

    def _still_opens(
        self,
        prepared: Prepared,
        sub: Subscription,
        records: list[InRecord],
        acc: Access,
        now: datetime,
    ) -> bool:
        """Would ``records`` be decoded and opened for ``sub`` now exactly as ``prepared``
        holds them? The same records and subscription, the same sources, no ready key taken
        out since, and every schema pair decided as it was (withheld or not, the same fields
        opened) under the grant as it is now."""
        src = self.sources(sub)
        if prepared.records is not records or _same(prepared.sub) != _same(sub):
            return False
        if src != prepared.sources or _key_generation(src) != prepared.keys:
            return False
        for (plain_id, wire_id), plan in prepared.plans.items():
            now_plan = self._decided(sub, acc, src, plan, plain_id, wire_id, now)
            if (now_plan.reason, now_plan.need, now_plan.sealed) != (
                plan.reason,
                plan.need,
                plan.sealed,
            ):
                return False
        return True

    def _open_all(
        self,
        sub: Subscription,
        acc: Access,
        records: list[InRecord],
        now: datetime,
        out: Rendered,
        plans: dict[tuple[int, int], _Plan],
    ) -> list[Opened]:
        """Decode each record and open the sealed fields it may need, in one pass; records
        that cannot be decoded or that the grant excludes whatever the consent are withheld.
        What depends only on the (plain, wire) schema pair is worked out once per page
        (:class:`_Plan`, kept in ``plans``), not per record."""
        opened: list[Opened] = []
        src = self.sources(sub)  # schema ids are the owner's for a mirrored topic
        for r in records:
            try:
                wire_id, body = wire.unframe(r.value)
                plain_id = _plain_id(r, wire_id)
                plan = plans.get((plain_id, wire_id))
                if plan is None:
                    plan = self._schemas_of(src, plain_id, wire_id)
                value = wire.decode_body(plan.wire, body)
            except DependencyUnavailable:
                raise
            except (ExchangeError, ValueError, EOFError):
                out.withheld.append(withheld_item(r, "undecodable"))
                continue
            if plan.reason is None:  # first record of this pair: decide once for the page
                plan = self._decided(sub, acc, src, plan, plain_id, wire_id, now)
                plans[(plain_id, wire_id)] = plan
            if plan.reason:
                out.withheld.append(withheld_item(r, plan.reason))
                continue
            redacted: dict[str, str] = {}
            if plan.sealed:
                if src.sealer is None:  # fail closed: never guess at sealed fields
                    raise DependencyUnavailable("field encryption is not configured")
                result = src.sealer.open(
                    topic=sub.topic,
                    sealed_schema_id=wire_id,
                    key=r.key,
                    record=value,
                    fields=plan.sealed,
                    granted=plan.need,
                )
                value, redacted = result  # the opener's own, made for this record
            found = (
                [str(s) for p in plan.subject_paths if (s := get_path(value, p)) is not None]
                if plan.subject_paths
                else []
            )
            opened.append(
                new_opened((r, plain_id, value, redacted, plan.fields, found, plan.plain))
            )
        return opened

    def _schemas_of(self, src: Sources, plain_id: int, wire_id: int) -> _Plan:
        plain = src.schemas.by_id(plain_id)
        wire_parsed = plain.parsed if wire_id == plain_id else src.schemas.by_id(wire_id).parsed
        return _Plan(list(plain.fields), plain.parsed, wire_parsed)

    def _decided(
        self,
        sub: Subscription,
        acc: Access,
        src: Sources,
        plan: _Plan,
        plain_id: int,
        wire_id: int,
        now: datetime,
    ) -> _Plan:
        """``plan`` with the grant's upper-bound decision: the reason its records are all
        withheld ("" if they may go), the sealed fields to open and the subject paths."""
        base = decision(sub, acc.entry, acc.grant, plan.fields, now, upper_bound=True)
        if base.withhold or not base.allowed:
            return replace(plan, reason=base.reason or "not_allowed")
        subjects = subject_paths(plan.fields)
        sealed = self._sealed(src, wire_id) if wire_id != plain_id else {}
        need = (set(base.allowed) | set(subjects)) & set(sealed)
        return replace(plan, reason="", sealed=sealed, need=need, subject_paths=subjects)


@dataclass(frozen=True)
class _Plan:
    """One page's work for one (plain, wire) schema pair."""

    fields: list[Any]
    plain: Any  # parsed plain schema (projection)
    wire: Any  # parsed wire schema (decoding)
    reason: str | None = None  # None: not decided yet; "": deliverable; else why withheld
    sealed: dict[str, Any] = field(default_factory=dict)  # sealed path -> original type
    need: set[str] = field(default_factory=set)  # sealed paths to open (granted or subject)
    subject_paths: list[str] = field(default_factory=list)


# A large page's audit append runs here while its records are shaped (render): a few
# long-lived threads instead of one started per page.
_AUDITS = ThreadPoolExecutor(4, thread_name_prefix="delivery-audit")


def _key_generation(src: Sources) -> int | None:
    """The sealer's key generation (0 without a sealer), None when it cannot tell whether a
    ready key was taken out (then nothing opened ahead is used)."""
    if src.sealer is None:
        return 0
    if not isinstance(src.sealer, KeyGenerations):
        return None
    return src.sealer.key_generation()


def _same(sub: Subscription) -> tuple[str, str, str, frozenset[str] | None]:
    """What decides how a subscription's records are opened (not its cursor)."""
    return (sub.id, sub.consumer, sub.topic, sub.fields)


def _plain_id(r: InRecord, wire_id: int) -> int:
    for k, v in r.headers:
        if k == SCHEMA_ID_HEADER:
            return int(v)
    return wire_id

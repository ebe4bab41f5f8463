"""The publish path: authorise, validate, seal, encode, then a group commit (one Kafka
transaction and one audit append shared with concurrent requests).

No HTTP here: the route parses the request and maps errors; this decides and does. The
collaborators are small ports (:mod:`dataplane.ports`), so this runs against fakes in unit
tests and against the real registry, catalog, KMS and broker everywhere else.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from consent.domain import CatalogEntry
from dataplane.cursor import offset_ranges
from dataplane.fields import get_path, sensitive_paths, subject_paths
from dataplane.group_commit import GroupCommitter
from dataplane.idempotency import IdempotencyStore, Staged
from dataplane.outcome import REQUEST_HEADER
from dataplane.ports import CatalogPort, SchemasPort, SealerPort
from exchange import metrics, tracing, wire
from exchange.auditing import AuditRecord
from exchange.avro_validation import problems
from exchange.crypto.sealing import completed
from exchange.crypto.sealing import sealed_fields as sealed_types
from exchange.errors import (
    DependencyUnavailable,
    ExchangeError,
    Forbidden,
    InvalidInput,
    KafkaUnavailable,
    NotFound,
)
from exchange.identity.tokens import Principal
from exchange.kafka.port import OutRecord, Position
from schemas.sealing_rules import sealed_form

SCHEMA_ID_HEADER = "exchange.schema_id"
PUBLISHER_HEADER = "exchange.publisher"
LATEST_TTL_S = 1.0


class BatchRejected(InvalidInput):
    """One or more records are invalid; nothing of the batch was written."""

    code = "invalid_records"


@dataclass(frozen=True)
class NewRecord:
    """A record to publish, as JSON (validated against the value schema here)."""

    key: str | None
    value: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FramedRecord:
    """A record that arrived already encoded (Confluent wire format)."""

    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class SealedPlan:
    plain_id: int
    wire_id: int  # the sealed schema's id, or the plain one when nothing is sensitive
    wire_parsed: Any
    plain_parsed: Any
    sealed: dict[str, Any]  # path → original type
    subjects: list[str]


@dataclass(frozen=True)
class Batch:
    """What one publish request asks for: JSON records (with a schema version) or frames."""

    records: Sequence[NewRecord] | Sequence[FramedRecord]
    schema_version: int | str = "latest"


@dataclass(frozen=True)
class Prepared:
    """A batch validated, sealed and encoded: what the group commit writes."""

    who: Principal
    entry: CatalogEntry
    plain_id: int
    out: list[OutRecord]
    subjects: list[str]


class Publisher:
    def __init__(
        self,
        *,
        schemas: SchemasPort,
        catalog: CatalogPort,
        sealer: SealerPort | None,
        committer: GroupCommitter,
        idempotency: IdempotencyStore,
        kafka_down: Callable[[], bool] = lambda: False,
    ) -> None:
        self.kafka_down = kafka_down  # known down now: fail fast rather than wait out timeouts
        self.schemas = schemas
        self.catalog = catalog
        self.sealer = sealer
        self.committer = committer
        self.idempotency = idempotency
        self._plans: dict[int, SealedPlan] = {}
        self._latest: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    # -- access --------------------------------------------------------------------------
    def authorize(self, who: Principal, topic: str) -> CatalogEntry:
        """The catalog entry, if ``who`` may publish to it. Same answer whether or not the
        topic exists, so other departments cannot probe the catalog."""
        if not who.has("publisher"):
            raise Forbidden("requires the publisher role")
        try:
            entry: CatalogEntry | None = self.catalog.get(topic)
        except NotFound:
            entry = None
        if entry is None or entry.owner != who.department:
            raise Forbidden(f"not allowed to publish to {topic}")
        return entry

    # -- the use case --------------------------------------------------------------------
    def publish(
        self,
        who: Principal,
        entry: CatalogEntry,
        batch: Batch,
        *,
        idempotency_key: str | None = None,
        request_hash: str = "",
    ) -> tuple[dict[str, Any], bool]:
        """Publish ``batch`` atomically; with an idempotency key, a retry gets the first
        answer. Returns the answer and whether it was replayed."""
        try:
            return self._publish_once(who, entry, batch, idempotency_key, request_hash)
        except ExchangeError as exc:  # a fixed set of classes: a bounded label
            metrics.PUBLISH_FAILURES.labels(type(exc).__name__).inc()
            raise

    def _publish_once(
        self,
        who: Principal,
        entry: CatalogEntry,
        batch: Batch,
        idempotency_key: str | None,
        request_hash: str,
    ) -> tuple[dict[str, Any], bool]:
        if self.kafka_down():
            raise KafkaUnavailable("Kafka is unavailable; nothing was published")
        if not idempotency_key:
            return self._publish(who, entry, batch, None), False
        claim = self.idempotency.claim(who.client_id, idempotency_key, request_hash)
        if claim.answer is not None:
            return claim.answer, True
        intent = (idempotency_key, claim.request_id)
        try:
            result = self._publish(who, entry, batch, intent)
        except BaseException:
            # Free the key for a retry (kept if the batch was staged: it may have committed).
            self.idempotency.release(who.client_id, idempotency_key, claim.request_id)
            raise
        self.idempotency.settle(who.client_id, idempotency_key, claim.request_id, result)
        return result, False

    def _publish(
        self, who: Principal, entry: CatalogEntry, batch: Batch, intent: tuple[str, str] | None
    ) -> dict[str, Any]:
        p = self._prepare(who, entry, batch, intent)
        return self._write(p, intent)

    def submit(self, who: Principal, entry: CatalogEntry, batch: Batch) -> Future[dict[str, Any]]:
        """:meth:`publish` without an idempotency key, not waiting for the group commit:
        validated, sealed and encoded here (errors raised at once), then the answer comes
        through the future once the batch's group has committed."""
        try:
            if self.kafka_down():
                raise KafkaUnavailable("Kafka is unavailable; nothing was published")
            p = self._prepare(who, entry, batch, None)
            positions = self.committer.submit(entry.topic, p.out, _event_for(p))
        except ExchangeError as exc:
            metrics.PUBLISH_FAILURES.labels(type(exc).__name__).inc()
            raise
        answer: Future[dict[str, Any]] = Future()
        answer.set_running_or_notify_cancel()  # a caller that stops waiting cannot cancel it

        def done(f: Future[list[Position]]) -> None:
            exc = f.exception()
            if exc is None:
                answer.set_result(self._written(p, f.result()))
                return
            if isinstance(exc, ExchangeError):
                metrics.PUBLISH_FAILURES.labels(type(exc).__name__).inc()
            answer.set_exception(exc)

        positions.add_done_callback(done)
        return answer

    def _prepare(
        self, who: Principal, entry: CatalogEntry, batch: Batch, intent: tuple[str, str] | None
    ) -> Prepared:
        records = list(batch.records)
        with tracing.span("publish.validate", topic=entry.topic, records=len(records)):
            if records and isinstance(records[0], FramedRecord):
                plan, values = self._decode_frames(entry, records)  # type: ignore[arg-type]
            else:
                plan = self.plan(
                    self.resolve_version(entry.value_subject, batch.schema_version),
                    entry.value_subject,
                )
                self._validate(records, plan)  # type: ignore[arg-type]
                values = [_complete(plan, r) for r in records]  # type: ignore[arg-type]
        with tracing.span("publish.seal", topic=entry.topic, records=len(values)):
            out = [self._seal_and_encode(entry, plan, r, who) for r in values]
        if intent is not None and out:  # lets a retry find this batch after a crash
            first = out[0]
            out[0] = OutRecord(
                first.key, first.value, [*first.headers, (REQUEST_HEADER, intent[1].encode())]
            )
        subjects = [
            str(s) for r in values for p in plan.subjects if (s := get_path(r.value, p)) is not None
        ]
        return Prepared(who, entry, plan.plain_id, out, subjects)

    # -- schema plan ---------------------------------------------------------------------
    def plan(self, plain_id: int, subject: str) -> SealedPlan:
        with self._lock:
            cached = self._plans.get(plain_id)
        if cached is not None:
            return cached
        stored = self.schemas.by_id(plain_id)
        sealed = sensitive_paths(stored.fields)
        wire_id, wire_parsed = plain_id, stored.parsed
        sealed_json = sealed_form(stored.parsed, stored.fields) if sealed else None
        if sealed_json is not None:
            # Original types with named types expanded: each parses on its own.
            sealed = sealed_types(sealed_json)
            sealed_subject = f"{subject}-sealed"
            # Sealed subjects follow their plain subject; compatibility is checked there.
            self.schemas.set_config(sealed_subject, "NONE")
            wire_id = self.schemas.register(
                sealed_subject, json.dumps(sealed_json), actor="exchange", actor_is_admin=True
            )
            wire_parsed = self.schemas.by_id(wire_id).parsed
        p = SealedPlan(
            plain_id, wire_id, wire_parsed, stored.parsed, sealed, subject_paths(stored.fields)
        )
        with self._lock:
            self._plans[plain_id] = p
        return p

    def resolve_version(self, subject: str, version: int | str) -> int:
        # "latest" is looked up at most once a second per subject: a newly registered
        # version is used by publishes that start up to a second later.
        now = time.monotonic()
        if version == "latest":
            with self._lock:
                hit = self._latest.get(subject)
            if hit is not None and now - hit[1] < LATEST_TTL_S:
                return hit[0]
        try:
            found = int(self.schemas.version(subject, version).id)
        except NotFound as exc:
            raise InvalidInput(f"schema {subject} version {version} is not registered") from exc
        if version == "latest":
            with self._lock:
                self._latest[subject] = (found, now)
        return found

    # -- validation ----------------------------------------------------------------------
    def _validate(self, records: Sequence[NewRecord], plan: SealedPlan) -> None:
        found = [p for i, r in enumerate(records) for p in _problems(i, r.value, plan.plain_parsed)]
        if found:
            raise BatchRejected(
                f"{len({p['index'] for p in found})} of {len(records)} "
                "records are invalid; nothing was written",
                errors=found,
            )

    def _decode_frames(
        self, entry: CatalogEntry, records: Sequence[FramedRecord]
    ) -> tuple[SealedPlan, list[NewRecord]]:
        values: list[NewRecord] = []
        plain_ids: set[int] = set()
        found: list[dict[str, Any]] = []
        checked: dict[int, Any] = {}  # schema id → stored schema, looked up once per batch
        for i, r in enumerate(records):
            try:
                schema_id, body = wire.unframe(r.value)
                stored = checked.get(schema_id)
                if stored is None:
                    stored = self.schemas.by_id(schema_id)
                    if not self._belongs(entry.value_subject, schema_id):
                        raise InvalidInput(
                            f"schema id {schema_id} is not a version of {entry.value_subject}"
                        )
                    checked[schema_id] = stored
                value = wire.decode_body(stored.parsed, body)
            except (ExchangeError, ValueError, EOFError, IndexError) as exc:
                found.append({"index": i, "path": "", "reason": _reason(exc)})
                continue
            plain_ids.add(schema_id)
            key = r.key.decode("utf-8", "replace") if r.key is not None else None
            values.append(NewRecord(key, value))
        if found:
            raise BatchRejected(
                f"{len(found)} of {len(records)} records are invalid; nothing was written",
                errors=found,
            )
        if len(plain_ids) > 1:
            raise BatchRejected("all records of a batch must use one schema version", errors=[])
        version_id = (
            plain_ids.pop() if plain_ids else self.resolve_version(entry.value_subject, "latest")
        )
        return self.plan(version_id, entry.value_subject), values

    def _belongs(self, subject: str, schema_id: int) -> bool:
        return any(s == subject for s, _ in self.schemas.usages(schema_id))

    # -- seal, encode, write -------------------------------------------------------------
    def _seal_and_encode(
        self, entry: CatalogEntry, plan: SealedPlan, r: NewRecord, who: Principal
    ) -> OutRecord:
        key_bytes = r.key.encode() if r.key is not None else None
        value = r.value
        if plan.sealed:
            if self.sealer is None:  # fail closed: never write sensitive fields unsealed
                raise DependencyUnavailable("field encryption is not configured")
            value = self.sealer.seal(
                topic=entry.topic,
                owner=entry.owner,
                cipher=entry.cipher,
                sealed_schema_id=plan.wire_id,
                key=key_bytes,
                record=value,
                fields=plan.sealed,
            )
        hdrs = [(k, v.encode()) for k, v in r.headers.items() if not k.startswith("exchange.")]
        hdrs += [
            (SCHEMA_ID_HEADER, str(plan.plain_id).encode()),
            (PUBLISHER_HEADER, who.client_id.encode()),
        ]
        return OutRecord(key_bytes, wire.encode(plan.wire_id, plan.wire_parsed, value), hdrs)

    def _write(self, p: Prepared, intent: tuple[str, str] | None = None) -> dict[str, Any]:
        def stage(positions: list[Position]) -> Staged:
            assert intent is not None
            return Staged(p.who.client_id, intent[0], intent[1], _answer(p, positions))

        # Shares one Kafka transaction and one audit append with concurrent requests.
        positions = self.committer.commit(
            p.entry.topic, p.out, _event_for(p), stage if intent else None
        )
        return self._written(p, positions)

    def _written(self, p: Prepared, positions: list[Position]) -> dict[str, Any]:
        metrics.PUBLISH_RECORDS.labels(p.entry.topic).inc(len(p.out))
        metrics.PUBLISH_BYTES.labels(p.entry.topic).inc(sum(len(r.value or b"") for r in p.out))
        return _answer(p, positions)


def _event_for(p: Prepared) -> Callable[[str, list[Position]], AuditRecord]:
    def event(kind: str, positions: list[Position]) -> AuditRecord:
        ranges = offset_ranges((q.partition, q.offset) for q in positions)
        return AuditRecord(
            kind,
            actor=p.who.client_id,
            department=p.who.department,
            topic=p.entry.topic,
            data={"count": len(p.out), "schema_id": p.plain_id, "offsets": ranges},
            subjects=tuple(sorted(set(p.subjects))),
            outcome="ok" if kind == "record.published" else "error",
        )

    return event


def _answer(p: Prepared, positions: list[Position]) -> dict[str, Any]:
    return {
        "topic": p.entry.topic,
        "schema_id": p.plain_id,
        "offsets": [{"partition": q.partition, "offset": q.offset} for q in positions],
    }


def _problems(index: int, value: Any, parsed: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        return [{"index": index, "path": "", "reason": "value must be a JSON object"}]
    return [{"index": index, "path": p.path, "reason": p.reason} for p in problems(value, parsed)]


def _complete(plan: SealedPlan, r: NewRecord) -> NewRecord:
    # A JSON record may leave out fields with defaults, sealed ones among them.
    if not plan.sealed:
        return r
    return NewRecord(r.key, completed(plan.plain_parsed, r.value), r.headers)


def _reason(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ExchangeError) else f"undecodable Avro body: {exc}"

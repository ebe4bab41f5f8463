"""The publish path: authorise, validate, seal, encode, one Kafka transaction, audit.

No HTTP here: the route parses the request and maps errors; this decides and does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from exchange import wire
from exchange.auditing import AuditRecord
from exchange.avro_validation import problems
from exchange.db import transaction
from exchange.delivery.cursor import offset_ranges
from exchange.delivery.models import IdempotencyRow
from exchange.errors import (
    Conflict,
    DependencyUnavailable,
    ExchangeError,
    Forbidden,
    InvalidInput,
    KafkaUnavailable,
    NotFound,
)
from exchange.identity.tokens import Principal
from exchange.kafka.client import OutRecord, Position
from gateway.container import Services
from gateway.services.fields import get_path, sensitive_paths, subject_paths

SCHEMA_ID_HEADER = "exchange.schema_id"
PUBLISHER_HEADER = "exchange.publisher"
LATEST_TTL_S = 1.0


class BatchRejected(InvalidInput):
    """One or more records are invalid; nothing of the batch was written."""

    code = "invalid_records"


@dataclass(frozen=True)
class InRecord:
    key: str | None
    value: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WireRecord:
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


class Publisher:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._plans: dict[int, SealedPlan] = {}
        self._latest: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    # -- access --------------------------------------------------------------------------
    def entry_for_publisher(self, who: Principal, topic: str) -> Any:
        """The catalog entry, if ``who`` may publish to it. Same answer whether or not the
        topic exists, so other departments cannot probe the catalog."""
        if not who.has("publisher"):
            raise Forbidden("requires the publisher role")
        try:
            entry = self.svc.extras["catalog"].get(topic)
        except NotFound:
            entry = None
        if entry is None or entry.owner != who.department:
            raise Forbidden(f"not allowed to publish to {topic}")
        return entry

    # -- schema plan ---------------------------------------------------------------------
    def plan(self, plain_id: int, subject: str) -> SealedPlan:
        with self._lock:
            cached = self._plans.get(plain_id)
        if cached is not None:
            return cached
        registry = self.svc.extras["registry"]
        stored = registry.by_id(plain_id)
        sealed = sensitive_paths(stored.fields)
        wire_id, wire_parsed = plain_id, stored.parsed
        if sealed:
            from exchange.crypto.sealing import sealed_fields as sealed_types
            from exchange.crypto.sealing import sealed_schema

            schema_json = json.loads(stored.schema)
            sealed_json = sealed_schema(schema_json, set(sealed))
            # Original types with named types expanded: each parses on its own.
            sealed = sealed_types(sealed_json)
            sealed_subject = f"{subject}-sealed"
            # Sealed subjects follow their plain subject; compatibility is checked there.
            registry.set_config(sealed_subject, "NONE")
            wire_id = registry.register(
                sealed_subject, json.dumps(sealed_json), actor="exchange", actor_is_admin=True
            )
            wire_parsed = registry.by_id(wire_id).parsed
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
            found = int(self.svc.extras["registry"].version(subject, version).id)
        except NotFound as exc:
            raise InvalidInput(f"schema {subject} version {version} is not registered") from exc
        if version == "latest":
            with self._lock:
                self._latest[subject] = (found, now)
        return found

    # -- publish -------------------------------------------------------------------------
    def publish_json(
        self, who: Principal, topic: str, records: list[InRecord], version: int | str = "latest"
    ) -> dict[str, Any]:
        entry = self.entry_for_publisher(who, topic)
        plan = self.plan(self.resolve_version(entry.value_subject, version), entry.value_subject)
        problems = [
            p for i, r in enumerate(records) for p in _validate(i, r.value, plan.plain_parsed)
        ]
        if problems:
            raise BatchRejected(
                f"{len({p['index'] for p in problems})} of {len(records)} "
                "records are invalid; nothing was written",
                errors=problems,
            )
        out = [self._seal_and_encode(entry, plan, r.key, r.value, r.headers, who) for r in records]
        subjects = [
            str(get_path(r.value, p))
            for r in records
            for p in plan.subjects
            if get_path(r.value, p) is not None
        ]
        return self._write(who, entry, plan.plain_id, out, subjects)

    def publish_wire(self, who: Principal, topic: str, records: list[WireRecord]) -> dict[str, Any]:
        entry = self.entry_for_publisher(who, topic)
        registry = self.svc.extras["registry"]
        values: list[InRecord] = []
        plain_ids: set[int] = set()
        problems: list[dict[str, Any]] = []
        for i, r in enumerate(records):
            try:
                schema_id, body = wire.unframe(r.value)
                stored = registry.by_id(schema_id)
                if not self._belongs(entry.value_subject, schema_id):
                    raise InvalidInput(
                        f"schema id {schema_id} is not a version of {entry.value_subject}"
                    )
                value = wire.decode_body(stored.parsed, body)
            except (ExchangeError, ValueError, EOFError, IndexError) as exc:
                problems.append({"index": i, "path": "", "reason": _reason(exc)})
                continue
            plain_ids.add(schema_id)
            key = r.key.decode("utf-8", "replace") if r.key is not None else None
            values.append(InRecord(key, value))
        if problems:
            raise BatchRejected(
                f"{len(problems)} of {len(records)} records are invalid; nothing was written",
                errors=problems,
            )
        if len(plain_ids) > 1:
            raise BatchRejected("all records of a batch must use one schema version", errors=[])
        version_id = (
            plain_ids.pop() if plain_ids else self.resolve_version(entry.value_subject, "latest")
        )
        plan = self.plan(version_id, entry.value_subject)
        out = [self._seal_and_encode(entry, plan, r.key, r.value, {}, who) for r in values]
        subjects = [
            str(get_path(r.value, p))
            for r in values
            for p in plan.subjects
            if get_path(r.value, p) is not None
        ]
        return self._write(who, entry, plan.plain_id, out, subjects)

    def _belongs(self, subject: str, schema_id: int) -> bool:
        registry = self.svc.extras["registry"]
        versions = getattr(registry, "ids_of_subject", None)
        if versions is None:
            return True
        return schema_id in versions(subject)

    def _seal_and_encode(
        self,
        entry: Any,
        plan: SealedPlan,
        key: str | None,
        value: Any,
        headers: dict[str, str],
        who: Principal,
    ) -> OutRecord:
        key_bytes = key.encode() if key is not None else None
        if plan.sealed:
            crypto = self.svc.extras.get("crypto")
            if crypto is None:  # fail closed: never write sensitive fields unsealed
                raise DependencyUnavailable("field encryption is not configured")
            value = crypto.seal(
                topic=entry.topic,
                owner=entry.owner,
                cipher=entry.cipher,
                sealed_schema_id=plan.wire_id,
                key=key_bytes,
                record=value,
                fields=plan.sealed,
            )
        hdrs = [(k, v.encode()) for k, v in headers.items() if not k.startswith("exchange.")]
        hdrs += [
            (SCHEMA_ID_HEADER, str(plan.plain_id).encode()),
            (PUBLISHER_HEADER, who.client_id.encode()),
        ]
        return OutRecord(key_bytes, wire.encode(plan.wire_id, plan.wire_parsed, value), hdrs)

    def _write(
        self, who: Principal, entry: Any, plain_id: int, out: list[OutRecord], subjects: list[str]
    ) -> dict[str, Any]:
        def event(kind: str, positions: list[Position]) -> AuditRecord:
            ranges = offset_ranges((p.partition, p.offset) for p in positions)
            return AuditRecord(
                kind,
                actor=who.client_id,
                department=who.department,
                topic=entry.topic,
                data={"count": len(out), "schema_id": plain_id, "offsets": ranges},
                subjects=tuple(sorted(set(subjects))),
                outcome="ok" if kind == "record.published" else "error",
            )

        staged: list[Position] = []

        def audit_first(positions: list[Position]) -> None:
            # Durable before the records become visible: if the audit log cannot take it, the
            # transaction is aborted and the client gets 503 with nothing published.
            staged.extend(positions)
            self.svc.audit.append(event("record.published", positions))

        try:
            positions = self.svc.kafka.publish_atomically(entry.topic, out, audit_first)
        except KafkaUnavailable:
            if staged:  # audited, then the commit failed: say so in the log too
                with contextlib.suppress(ExchangeError):
                    self.svc.audit.append(event("record.publish_aborted", staged))
            raise
        return {
            "topic": entry.topic,
            "schema_id": plain_id,
            "offsets": [{"partition": p.partition, "offset": p.offset} for p in positions],
        }

    # -- idempotency ---------------------------------------------------------------------
    def remembered(self, who: Principal, key: str, request_hash: str) -> dict[str, Any] | None:
        """The stored answer of an earlier request with this key, or None to go ahead.
        Claims the key first so two concurrent retries cannot both publish."""
        with transaction(self.svc.sessions) as s:
            row = s.scalars(
                select(IdempotencyRow).where(
                    IdempotencyRow.client_id == who.client_id, IdempotencyRow.key == key
                )
            ).first()
            if row is not None:
                if row.request_hash != request_hash:
                    raise Conflict("Idempotency-Key was used with a different request")
                if row.response is None:
                    raise Conflict("a request with this Idempotency-Key is in progress")
                return dict(row.response)
        try:
            with transaction(self.svc.sessions) as s:
                s.add(
                    IdempotencyRow(
                        client_id=who.client_id,
                        key=key,
                        request_hash=request_hash,
                        response=None,
                        created_at=datetime.now(UTC),
                    )
                )
        except ExchangeError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise Conflict("a request with this Idempotency-Key is in progress") from exc
            raise
        return None

    def remember(self, who: Principal, key: str, response: dict[str, Any] | None) -> None:
        with transaction(self.svc.sessions) as s:
            row = s.scalars(
                select(IdempotencyRow).where(
                    IdempotencyRow.client_id == who.client_id, IdempotencyRow.key == key
                )
            ).first()
            if row is None:
                return
            if response is None:  # the publish failed: free the key for a retry
                s.delete(row)
            else:
                row.response = response


def request_digest(body: bytes, topic: str) -> str:
    return hashlib.sha256(topic.encode() + b"\0" + body).hexdigest()


def _validate(index: int, value: Any, parsed: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        return [{"index": index, "path": "", "reason": "value must be a JSON object"}]
    return [{"index": index, "path": p.path, "reason": p.reason} for p in problems(value, parsed)]


def _reason(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ExchangeError) else f"undecodable Avro body: {exc}"

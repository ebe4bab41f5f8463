"""Sealing and opening the sensitive fields of one record (the gateway's entry point).

``seal`` turns each sensitive value into an envelope (Avro binary of the value under its
original type, AEAD under the field's current DEK). ``open`` gives back exactly the granted
fields: not granted → omitted; DEK shredded → None + redacted "shredded"; envelope fails
authentication → None + redacted "integrity" (never plaintext). KMS or key store down →
:class:`exchange.errors.DependencyUnavailable` (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exchange.crypto import envelope, sealing
from exchange.crypto.errors import IntegrityFailure, KeyShredded
from exchange.crypto.keys import KeyManager
from exchange.crypto.kms_wrappers import KmsMetrics

SHREDDED = "shredded"
INTEGRITY = "integrity"


@dataclass(frozen=True)
class OpenedRecord:
    value: dict[str, Any]
    redacted: dict[str, str] = field(default_factory=dict)  # path → "shredded" | "integrity"


@dataclass(frozen=True)
class _Step:
    path: str
    parts: tuple[str, ...]  # () for a top-level field
    parsed: Any  # parsed original Avro type
    enclosing: tuple[str, ...]  # enclosing record paths: granting one grants this field


class FieldCrypto:
    def __init__(
        self,
        keys: KeyManager,
        metrics: KmsMetrics | None = None,
        close: Callable[[], None] | None = None,
    ) -> None:
        self.keys = keys
        self.metrics = metrics or KmsMetrics()
        self._close = close
        # Plans per ``fields`` mapping, by identity (the object is kept alive with its plan).
        self._plans: dict[int, tuple[dict[str, Any], tuple[_Step, ...]]] = {}

    def _plan(self, fields: dict[str, Any]) -> tuple[_Step, ...]:
        hit = self._plans.get(id(fields))
        if hit is not None and hit[0] is fields and len(hit[1]) == len(fields):
            return hit[1]
        plan = tuple(
            _Step(
                p,
                tuple(p.split(".")) if "." in p else (),
                sealing.parsed_type(t),
                tuple(".".join(p.split(".")[:i]) for i in range(p.count("."), 0, -1)),
            )
            for p, t in fields.items()
        )
        if len(self._plans) > 1024:
            self._plans.clear()
        self._plans[id(fields)] = (fields, plan)
        return plan

    def close(self) -> None:
        """Release the KMS provider (e.g. the PKCS#11 session)."""
        if self._close is not None:
            self._close()

    def clear_cache(self) -> None:
        """Forget every unwrapped DEK (next use asks the KMS again)."""
        self.keys.clear_cache()

    def seal(
        self,
        *,
        topic: str,
        owner: str,
        cipher: str = "AES256_GCM",
        sealed_schema_id: int,
        key: bytes | None,
        record: dict[str, Any],
        fields: dict[str, Any],
    ) -> dict[str, Any]:
        out = dict(record)
        for step in self._plan(fields):
            path = step.path
            if not step.parts:  # top level: no path walking, one shared copy
                if path not in record:
                    continue
                value = record[path]
            else:
                value = sealing.get_path(record, step.parts)
                if value is sealing.MISSING:
                    continue  # an enclosing optional record is null: nothing to seal
            plaintext = sealing.encode_parsed(step.parsed, value)
            dek = self.keys.current(topic, path, owner, cipher)
            ctx = envelope.context_bytes(topic, path, sealed_schema_id, key)
            sealed = envelope.seal_with(dek.aead, dek.prefix, ctx, plaintext)
            if not step.parts:
                out[path] = sealed
            else:
                out = sealing.replace_path(out, step.parts, sealed)
        return out

    def open(
        self,
        *,
        topic: str,
        sealed_schema_id: int,
        key: bytes | None,
        record: dict[str, Any],
        fields: dict[str, Any],
        granted: set[str],
    ) -> OpenedRecord:
        out = dict(record)
        redacted: dict[str, str] = {}
        for step in self._plan(fields):
            path = step.path
            if not step.parts:
                if path not in record:
                    continue
                raw = record[path]
            else:
                raw = sealing.get_path(record, step.parts)
                if raw is sealing.MISSING:
                    continue
            if path in granted or any(g in granted for g in step.enclosing):
                ctx = envelope.context_bytes(topic, path, sealed_schema_id, key)
                try:
                    value = self._open_one(raw, topic, path, ctx, step.parsed)
                except KeyShredded:
                    value, redacted[path] = None, SHREDDED
                except IntegrityFailure:
                    value, redacted[path] = None, INTEGRITY
            else:
                value = sealing.MISSING  # not granted: omitted
            if not step.parts:
                if value is sealing.MISSING:
                    del out[path]
                else:
                    out[path] = value
            else:
                out = sealing.replace_path(out, step.parts, value)
        return OpenedRecord(out, redacted)

    def _open_one(self, raw: Any, topic: str, path: str, ctx: bytes, parsed: Any) -> Any:
        if not isinstance(raw, bytes):
            raise IntegrityFailure("sealed field does not hold an envelope")
        header, body = envelope.parse(raw)
        dek = self.keys.get(header.dek_id, header.dek_version)
        if dek.topic != topic or dek.field != path or dek.cipher is not header.cipher:
            raise IntegrityFailure("envelope key belongs to another field")
        plaintext = envelope.open_with(dek.aead, header, body, ctx)
        try:
            return sealing.decode_parsed(parsed, plaintext)
        except Exception:  # authenticated but undecodable: treat as integrity failure
            raise IntegrityFailure("sealed value does not decode under its type") from None

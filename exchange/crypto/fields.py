"""Sealing and opening the sensitive fields of one record (the gateway's entry point).

``seal`` turns each sensitive value into an envelope (Avro binary of the value under its
original type, AEAD under the field's current DEK). ``open`` gives back exactly the granted
fields: not granted → omitted; DEK shredded → None + redacted "shredded"; envelope fails
authentication → None + redacted "integrity" (never plaintext). KMS or key store down →
:class:`exchange.errors.DependencyUnavailable` (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exchange import avro_paths
from exchange.crypto import envelope, sealing
from exchange.crypto.errors import IntegrityFailure, KeyShredded
from exchange.crypto.keys import KeyManager
from exchange.crypto.kms_wrappers import KmsMetrics
from exchange.errors import InvalidInput

SHREDDED = "shredded"
INTEGRITY = "integrity"


@dataclass(frozen=True)
class OpenedRecord:
    value: dict[str, Any]
    redacted: dict[str, str] = field(default_factory=dict)  # path → "shredded" | "integrity"


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
        # Shapes of plain ``fields`` mappings, by identity (the object is kept alive).
        self._shapes: dict[int, tuple[Mapping[str, Any], avro_paths.Node]] = {}

    def _root(self, fields: Mapping[str, Any]) -> avro_paths.Node:
        """Where the sealed fields are: the sealed schema's shape (``sealed_fields``), or for a
        plain path → type mapping, records nested along the dotted paths."""
        if isinstance(fields, sealing.SealedFields):
            root = fields.shape.root
            return root if root is not None else avro_paths.Record("")
        hit = self._shapes.get(id(fields))
        if hit is not None and hit[0] is fields:
            return hit[1]
        root = _nested(fields)
        if len(self._shapes) > 1024:
            self._shapes.clear()
        self._shapes[id(fields)] = (fields, root)
        return root

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
        fields: Mapping[str, Any],
    ) -> dict[str, Any]:
        """``record`` with every sealed field, at any depth, replaced by its envelope."""

        def visit(slot: avro_paths.Slot, value: Any, location: str) -> bytes:
            plaintext = sealing.encode_parsed(_parsed(slot), value)
            dek = self.keys.current(topic, slot.path, owner, cipher)
            ctx = envelope.context_bytes(topic, location, sealed_schema_id, key)
            return envelope.seal_with(dek.aead, dek.prefix, ctx, plaintext)

        try:
            out: dict[str, Any] = avro_paths.rewrite(
                self._root(fields), record, "", visit, sealing=True
            )
        except RecursionError:  # hostile nesting: refuse rather than fail with a 500
            raise InvalidInput("record is nested too deeply to seal") from None
        return out

    def open(
        self,
        *,
        topic: str,
        sealed_schema_id: int,
        key: bytes | None,
        record: dict[str, Any],
        fields: Mapping[str, Any],
        granted: set[str],
    ) -> OpenedRecord:
        """Granted sealed fields opened (a path is granted by itself or an enclosing record's
        path), the others omitted, at every depth."""
        redacted: dict[str, str] = {}

        def visit(slot: avro_paths.Slot, raw: Any, location: str) -> Any:
            path = slot.path
            if not _granted(path, granted):
                return avro_paths.MISSING
            ctx = envelope.context_bytes(topic, location, sealed_schema_id, key)
            try:
                return self._open_one(raw, topic, path, ctx, _parsed(slot))
            except KeyShredded:
                redacted[path] = SHREDDED
            except IntegrityFailure:
                redacted.setdefault(path, INTEGRITY)
            return None

        out = avro_paths.rewrite(self._root(fields), record, "", visit, sealing=False)
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


def _parsed(slot: avro_paths.Slot) -> Any:
    return sealing.parsed_type(slot.field[sealing.ORIGINAL_TYPE])


def _granted(path: str, granted: set[str]) -> bool:
    if path in granted:
        return True
    parts = path.split(".")
    return any(".".join(parts[:i]) in granted for i in range(1, len(parts)))


def _nested(fields: Mapping[str, Any]) -> avro_paths.Record:
    """Records nested along dotted paths, each path's last field sealed with its type."""
    root = avro_paths.Record("")
    for path, avro_type in fields.items():
        rec, parts = root, path.split(".")
        for i, name in enumerate(parts):
            slot = rec.by_name.get(name)
            if slot is None:
                here = ".".join(parts[: i + 1])
                last = i == len(parts) - 1
                attrs = {"name": name, sealing.ORIGINAL_TYPE: avro_type} if last else {}
                slot = avro_paths.Slot(name, here, attrs, last, reaches_mark=True)
                rec.slots.append(slot)
                rec.by_name[name] = slot
            if i < len(parts) - 1:
                if not isinstance(slot.child, avro_paths.Record):
                    slot.child = avro_paths.Record("")
                rec = slot.child
    return root

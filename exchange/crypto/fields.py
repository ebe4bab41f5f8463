"""Sealing and opening the sensitive fields of one record (the gateway's entry point).

``seal`` turns each sensitive value into an envelope (Avro binary of the value under its
original type, AEAD under the field's current DEK). ``open`` gives back exactly the granted
fields: not granted → omitted; DEK shredded → None + redacted "shredded"; envelope fails
authentication → None + redacted "integrity" (never plaintext). KMS or key store down →
:class:`exchange.errors.DependencyUnavailable` (fail closed).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Mapping
from functools import partial
from os import urandom
from typing import Any, NamedTuple, Protocol

from cryptography.exceptions import InvalidTag

from exchange import avro_paths
from exchange.crypto import ciphers, envelope, sealing
from exchange.crypto.errors import IntegrityFailure, KeyShredded
from exchange.crypto.keys import Dek, HotDek, KeyManager
from exchange.crypto.kms_wrappers import KmsMetrics
from exchange.errors import InvalidInput

SHREDDED = "shredded"
INTEGRITY = "integrity"


class OpenedRecord(NamedTuple):  # a NamedTuple: made for every record delivered
    value: dict[str, Any]
    redacted: dict[str, str]  # path → "shredded" | "integrity"


class OpenKeys(Protocol):
    """What opening needs of a key source: the key manager, or a remote site's keys released
    by the owner (:mod:`dataplane.federation`)."""

    def get(self, dek_id: str, version: int) -> Dek: ...

    def ready_table(self) -> Mapping[Any, HotDek]: ...


class FieldOpener:
    """Opening only (``open``), over any :class:`OpenKeys`."""

    def __init__(self, keys: OpenKeys) -> None:
        self.keys = keys
        # Shapes of plain ``fields`` mappings, by identity (the object is kept alive).
        self._shapes: dict[int, tuple[Mapping[str, Any], avro_paths.Node]] = {}
        # Flat plans of ``fields`` mappings per (identity, topic, schema id); see _flat.
        self._flats: dict[tuple[int, str, int], tuple[Mapping[str, Any], _Flat | None]] = {}

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
        path), the others omitted, at every depth.

        When every sealed field is a top-level field (the usual case) this is one loop over
        them, written out here because it runs for every record delivered: the same checks
        as the general walk (envelope format, the DEK's topic/field/cipher, the AAD binding
        topic, path, schema id and record key, the value decoding under its type) with fewer
        calls (``tests/unit/crypto/test_open_flat.py`` holds the two to the same answers)."""
        hit = self._flats.get((id(fields), topic, sealed_schema_id))
        flat = (
            hit[1]
            if hit is not None and hit[0] is fields
            else self._flat(fields, topic, sealed_schema_id)
        )
        if flat is None:
            return self._open_walk(topic, sealed_schema_id, key, record, fields, granted)
        if not isinstance(record, dict):
            return OpenedRecord(record, {})
        out: dict[str, Any] | None = None
        redacted: dict[str, str] = {}
        tail = _KEY_LEN.pack(len(key)) + key if key else b"\0\0\0\0"
        now = time.monotonic()
        for name, ctx, decode, _, text, deks in flat:
            raw = record.get(name, _ABSENT)
            if raw is _ABSENT:
                continue
            if out is None:
                out = dict(record)
            if name not in granted:
                del out[name]
                continue
            try:
                # The header: version, cipher, n, DEK id (n bytes), u32 version, nonce. Its
                # part before the nonce names a ready DEK; anything else (not ready, or
                # malformed: no such prefix is ready) takes the full parse.
                if type(raw) is not bytes and not isinstance(raw, bytes):
                    raise IntegrityFailure("sealed field does not hold an envelope")
                end = 19 + raw[2]  # IndexError: too short (below)
                hot = deks.get(raw[: end - 12])  # ready, and checked to be this field's
                if hot is not None and hot.expires > now:
                    dek = hot.dek
                else:
                    dek = self._checked_dek(raw, end, topic, name, deks)
                try:
                    plain = dek.aead.decrypt(raw[end - 12 : end], raw[end:], raw[:end] + ctx + tail)
                except (InvalidTag, ValueError):  # ValueError: nonce cut short
                    raise IntegrityFailure("envelope failed authentication") from None
                try:
                    # A string of fewer than 64 bytes (one length byte) decoded in place.
                    if text and (z := plain[0]) < 0x80 and z == (len(plain) - 1) << 1:
                        out[name] = plain[1:].decode()
                    else:
                        out[name] = decode(plain)
                except Exception:  # authenticated but undecodable: an integrity failure
                    raise IntegrityFailure("sealed value does not decode under its type") from None
            except KeyShredded:
                out[name] = None
                redacted[name] = SHREDDED
            except (IntegrityFailure, IndexError):
                out[name] = None
                redacted.setdefault(name, INTEGRITY)
        return _opened((record if out is None else out, redacted))

    def _open_walk(
        self,
        topic: str,
        sealed_schema_id: int,
        key: bytes | None,
        record: dict[str, Any],
        fields: Mapping[str, Any],
        granted: set[str],
    ) -> OpenedRecord:
        """``open`` through the general walk (sealed fields at any depth)."""
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

    def _flat(self, fields: Mapping[str, Any], topic: str, schema_id: int) -> _Flat | None:
        """The sealed fields as a flat list when all of them are top-level fields (the usual
        case: then a field's location is its name), else None (the general walk)."""
        key = (id(fields), topic, schema_id)
        hit = self._flats.get(key)
        if hit is not None and hit[0] is fields:
            return hit[1]
        root = self._root(fields)
        flat: _Flat | None = None
        if isinstance(root, avro_paths.Record) and all(
            s.marked and s.child is None and s.path == s.name for s in root.slots if s.reaches_mark
        ):
            flat = tuple(
                _FlatSlot(
                    s.name,
                    envelope.context_prefix(topic, s.path, schema_id),
                    sealing.decoder(_parsed(s)),
                    sealing.encoder(_parsed(s)),
                    _parsed(s) == "string",
                    {},
                )
                for s in root.slots
                if s.reaches_mark
            )
        if len(self._flats) > 1024:
            self._flats.clear()
        self._flats[key] = (fields, flat)
        return flat

    def _checked_dek(
        self, raw: bytes, end: int, topic: str, name: str, deks: dict[bytes, HotDek]
    ) -> Dek:
        """The DEK of an envelope in top-level field ``name``, if it is that field's
        (IntegrityFailure if not). A ready one is remembered in ``deks`` by its envelope
        prefix: the key manager expires an entry the moment it takes it out (shredding,
        rotation), so a remembered entry is used only while the manager would answer it."""
        prefix = raw[: end - 12]
        hot = self.keys.ready_table().get(prefix)
        dek = hot.dek if hot is not None and hot.expires > time.monotonic() else self._dek_of(raw)
        if dek.topic != topic or dek.field != name:
            raise IntegrityFailure("envelope key belongs to another field")
        hot = self.keys.ready_table().get(prefix)
        if hot is not None and hot.dek is dek:
            if len(deks) >= 64:
                deks.clear()
            deks[prefix] = hot
        return dek

    def _dek_of(self, raw: bytes) -> Dek:
        """The DEK an envelope names, its header parsed in full (IntegrityFailure if it is
        malformed), from the key manager (KeyShredded, DependencyUnavailable)."""
        header, _ = envelope.parse(raw)
        dek = self.keys.get(header.dek_id, header.dek_version)
        if dek.cipher is not header.cipher:
            raise IntegrityFailure("envelope key belongs to another field")
        return dek

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


class FieldCrypto(FieldOpener):
    """Sealing and opening over the key manager (the gateway's entry point)."""

    keys: KeyManager

    def __init__(
        self,
        keys: KeyManager,
        metrics: KmsMetrics | None = None,
        close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(keys)
        self.keys = keys
        self.metrics = metrics or KmsMetrics()
        self._close = close

    def close(self) -> None:
        """Release the KMS provider (e.g. the PKCS#11 session)."""
        if self._close is not None:
            self._close()

    def clear_cache(self) -> None:
        """Forget every unwrapped DEK (next use asks the KMS again)."""
        self.keys.clear_cache()

    def key_generation(self) -> int:
        """:attr:`KeyManager.generation` (:class:`dataplane.ports.KeyGenerations`)."""
        return self.keys.generation

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
        """``record`` with every sealed field, at any depth, replaced by its envelope.

        Top-level sealed fields (the usual case) in one loop: the same encoding, DEK choice
        (and use count), context and envelope as the general walk, fewer calls
        (``tests/unit/crypto/test_seal_flat.py`` holds the two to the same envelopes)."""
        hit = self._flats.get((id(fields), topic, sealed_schema_id))
        flat = (
            hit[1]
            if hit is not None and hit[0] is fields
            else self._flat(fields, topic, sealed_schema_id)
        )
        if flat is None or not isinstance(record, dict):
            return self._seal_walk(topic, owner, cipher, sealed_schema_id, key, record, fields)
        out: dict[str, Any] | None = None
        tail = _KEY_LEN.pack(len(key)) + key if key else b"\0\0\0\0"
        current = self.keys.current
        for slot in flat:
            name = slot.name
            value = record.get(name, _ABSENT)
            if value is _ABSENT:
                continue
            plaintext = slot.encode(value)
            dek = current(topic, name, owner, cipher)
            nonce = urandom(ciphers.NONCE_BYTES)  # the same CSPRNG as ``secrets``
            header = dek.prefix + nonce
            if out is None:
                out = dict(record)
            out[name] = header + dek.aead.encrypt(nonce, plaintext, header + slot.ctx + tail)
        return record if out is None else out

    def _seal_walk(
        self,
        topic: str,
        owner: str,
        cipher: str,
        sealed_schema_id: int,
        key: bytes | None,
        record: dict[str, Any],
        fields: Mapping[str, Any],
    ) -> dict[str, Any]:
        """``seal`` through the general walk (sealed fields at any depth)."""

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


_KEY_LEN = struct.Struct(">I")
_ABSENT: Any = object()


class _FlatSlot(NamedTuple):
    """One top-level sealed field: its name (= path = location), the fixed part of its AAD
    context (topic, path, schema id; the record key follows), its type's decoder/encoder."""

    name: str
    ctx: bytes
    decode: Callable[[bytes], Any]
    encode: Callable[[Any], bytes]
    text: bool  # a plain string: short ones are decoded in the loop
    deks: dict[bytes, HotDek]  # ready DEKs of this field by envelope prefix (_checked_dek)


_Flat = tuple[_FlatSlot, ...]
# OpenedRecord((value, redacted)) without the NamedTuple's Python-level __new__ (per record).
_opened: Callable[[tuple[dict[str, Any], dict[str, str]]], OpenedRecord] = partial(
    tuple.__new__, OpenedRecord
)


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

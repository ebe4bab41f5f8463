"""Keys and policy stay with the owner site: key release there, remote reading here.

Owner side — :class:`KeyRelease`: a remote department (a department of the owner's, whose
client authenticates with the remote *site's* identity key) asks for the data keys of the
envelopes it holds. The owner checks its own agreement for that department and topic (active,
valid now, the key's field among the granted ones) and audits every release
(``federation.keys_released``, key ids and fields, never key bytes). Agreements that require
data-subject consent release nothing across sites (consent is per record; a data key opens a
field of every record): such fields stay withheld remotely — fail closed.

Remote side — :class:`RemoteReader`: reads a mirrored topic from this site's Kafka (bytes as
the owner wrote them, so schema ids are the *owner's*: each is resolved once through the
owner's registry over the site link and cached, schemas being immutable), decodes, collects
the envelopes' key ids, asks the owner for those keys (cached ``KEY_TTL_S`` seconds, so a
revocation at the owner bites here within that plus the owner's grant cache), and opens only
the granted fields. Unsealed fields always go (the owner shared the topic with this site and
they are stored unsealed on both clusters). Owner unreachable → every sealed field withheld and
named in ``withheld`` with reason ``owner_unreachable``; unsealed fields keep flowing.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from consent.domain import Grant
from dataplane.render import jsonable
from exchange import avro_paths, wire
from exchange.auditing import AuditRecord, AuditSink
from exchange.crypto import ciphers, envelope
from exchange.crypto.errors import IntegrityFailure, KeyShredded
from exchange.crypto.fields import FieldCrypto
from exchange.crypto.keys import Dek
from exchange.crypto.sealing import SealedFields, sealed_fields
from exchange.errors import DependencyUnavailable, ExchangeError, Forbidden, NotFound
from exchange.kafka.port import InRecord, KafkaPort

if TYPE_CHECKING:
    from exchange.crypto.keys import KeyManager

KEY_TTL_S = 2.0
MAX_KEYS = 256
OWNER_UNREACHABLE = "owner_unreachable"
NOT_GRANTED = "not_granted"


class GrantSource(Protocol):
    def current_grant(self, consumer_dept: str, topic: str, now: datetime) -> Grant | None: ...


class DekSource(Protocol):
    def get(self, dek_id: str, version: int) -> Dek: ...


def _granted(path: str, granted: set[str]) -> bool:
    parts = path.split(".")
    return any(".".join(parts[:i]) in granted for i in range(1, len(parts) + 1))


class KeyRelease:
    def __init__(
        self,
        *,
        shared: Callable[[str], bool],
        grants: GrantSource,
        keys: DekSource,
        audit: AuditSink,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.shared = shared
        self.grants = grants
        self.keys = keys
        self.audit = audit
        self.clock = clock

    def release(
        self, *, client_id: str, department: str, topic: str, wanted: Sequence[tuple[str, int]]
    ) -> dict[str, Any]:
        if not self.shared(topic):
            raise NotFound(f"topic {topic} is not shared with another site")
        grant = self.grants.current_grant(department, topic, self.clock())
        granted = set(grant.fields) if grant and not grant.requires_subject_consent else set()
        released: list[dict[str, Any]] = []
        for dek_id, version in list(dict.fromkeys(wanted))[:MAX_KEYS]:
            try:
                dek = self.keys.get(dek_id, version)
            except (KeyShredded, IntegrityFailure):
                continue  # shredded or unknown: nothing to release
            if dek.topic != topic or not _granted(dek.field, granted):
                continue
            released.append(
                {
                    "dek_id": dek.dek_id,
                    "version": dek.version,
                    "field": dek.field,
                    "cipher": dek.cipher.name,
                    "key": base64.b64encode(dek.key).decode(),
                }
            )
        self.audit.append(
            AuditRecord(
                "federation.keys_released",
                actor=client_id,
                department=department,
                topic=topic,
                outcome="ok" if grant is not None else "denied",
                data={
                    "agreement": grant.agreement_id if grant else None,
                    "fields": sorted({k["field"] for k in released}),
                    "keys": [f"{k['dek_id']}:{k['version']}" for k in released],
                    "asked": len(wanted),
                },
            )
        )
        return {"granted_fields": sorted(granted), "keys": released, "ttl_s": KEY_TTL_S}


# -- the remote site ----------------------------------------------------------------------
class OwnerLink(Protocol):
    def release(self, topic: str, keys: list[tuple[str, int]]) -> dict[str, Any]: ...

    def schema(self, schema_id: int) -> str: ...


@dataclass
class _Released:
    granted: frozenset[str]
    keys: dict[tuple[str, int], Dek]
    asked: frozenset[tuple[str, int]]
    at: float


class _Keys:
    """The released keys as FieldCrypto's key source (``get`` only: nothing is sealed here)."""

    def __init__(self, keys: dict[tuple[str, int], Dek]) -> None:
        self._keys = keys

    def get(self, dek_id: str, version: int) -> Dek:
        dek = self._keys.get((dek_id, version))
        if dek is None:
            raise KeyShredded("key not released by the owner")
        return dek


def _dek(item: dict[str, Any], topic: str) -> Dek:
    spec = ciphers.spec_named(str(item["cipher"]))
    raw = base64.b64decode(item["key"])
    return Dek(
        str(item["dek_id"]),
        int(item["version"]),
        spec,
        topic,
        str(item["field"]),
        raw,
        ciphers.aead_for(spec, raw),
    )


class RemoteReader:
    def __init__(
        self,
        *,
        kafka: KafkaPort,
        owner_of: Callable[[str], str | None],
        link_for: Callable[[str, str], OwnerLink],
        audit: AuditSink,
        ttl: float = KEY_TTL_S,
    ) -> None:
        self.kafka = kafka
        self.owner_of = owner_of
        self.link_for = link_for
        self.audit = audit
        self.ttl = ttl
        self._schemas: dict[tuple[str, int], tuple[Any, SealedFields]] = {}
        self._released: dict[tuple[str, str], _Released] = {}
        self._lock = threading.Lock()

    def _schema(self, owner: str, link: OwnerLink, schema_id: int) -> tuple[Any, SealedFields]:
        hit = self._schemas.get((owner, schema_id))
        if hit is None:
            import fastavro

            text = json.loads(link.schema(schema_id))
            hit = (fastavro.parse_schema(text), sealed_fields(text))
            with self._lock:
                self._schemas[(owner, schema_id)] = hit
        return hit

    def _keys(
        self, department: str, topic: str, link: OwnerLink, wanted: set[tuple[str, int]]
    ) -> _Released:
        now = time.monotonic()
        with self._lock:
            hit = self._released.get((department, topic))
        if hit is not None and now - hit.at < self.ttl and wanted <= hit.asked:
            return hit
        answer = link.release(topic, sorted(wanted))
        fresh = _Released(
            frozenset(answer.get("granted_fields", [])),
            {(k["dek_id"], int(k["version"])): _dek(k, topic) for k in answer.get("keys", [])},
            frozenset(wanted),
            now,
        )
        with self._lock:
            self._released[(department, topic)] = fresh
        return fresh

    def read(
        self,
        *,
        client_id: str,
        department: str,
        topic: str,
        partition: int,
        offset: int,
        limit: int,
        wait_s: float = 5.0,
    ) -> dict[str, Any]:
        owner = self.owner_of(topic)
        if owner is None:
            raise NotFound(f"topic {topic} is not mirrored to this site")
        link = self.link_for(department, owner)
        records, partitions = self._fetch(topic, partition, offset, limit, wait_s)
        decoded: list[tuple[InRecord, int, dict[str, Any], SealedFields] | InRecord] = []
        reachable = True
        wanted: set[tuple[str, int]] = set()
        for r in records:
            try:
                schema_id, body = wire.unframe(r.value)
                parsed, sealed = self._schema(owner, link, schema_id)
                value = wire.decode_body(parsed, body)
            except DependencyUnavailable:
                reachable = False
                decoded.append(r)
                continue
            except (ExchangeError, ValueError, EOFError):
                decoded.append(r)
                continue
            wanted |= _envelope_keys(sealed, value)
            decoded.append((r, schema_id, value, sealed))
        released: _Released | None = None
        if wanted:
            try:
                released = self._keys(department, topic, link, wanted)
            except DependencyUnavailable:
                reachable = False
        items = [self._item(topic, d, released, reachable) for d in decoded]
        self.audit.append(
            AuditRecord(
                "federation.delivered",
                actor=client_id,
                department=department,
                topic=topic,
                data={
                    "owner": owner,
                    "partition": partition,
                    "offsets": [offset, offset + len(records)],
                    "count": len(records),
                    "fields": sorted(released.granted) if released else [],
                    "owner_reachable": reachable,
                },
            )
        )
        nxt = records[-1].offset + 1 if records else offset
        return {
            "topic": topic,
            "owner": owner,
            "partition": partition,
            "partitions": partitions,
            "records": items,
            "next_offset": nxt,
        }

    def _item(
        self,
        topic: str,
        d: tuple[InRecord, int, dict[str, Any], SealedFields] | InRecord,
        released: _Released | None,
        reachable: bool,
    ) -> dict[str, Any]:
        if isinstance(d, InRecord):
            reason = "undecodable" if reachable else OWNER_UNREACHABLE
            return {"partition": d.partition, "offset": d.offset, "withheld_record": reason}
        r, schema_id, value, sealed = d
        granted = set(released.granted) if released is not None else set()
        keys = released.keys if released is not None else {}
        # FieldCrypto only reads keys here (``get``); released keys stand in for the key store.
        opener = FieldCrypto(cast("KeyManager", _Keys(keys)))
        opened = opener.open(
            topic=topic,
            sealed_schema_id=schema_id,
            key=r.key,
            record=value,
            fields=sealed,
            granted=granted,
        )
        withheld: dict[str, str] = {}
        for path in sealed:
            if released is None:
                withheld[path] = OWNER_UNREACHABLE if not reachable else NOT_GRANTED
            elif not _granted(path, granted):
                withheld[path] = NOT_GRANTED
            elif path in opened.redacted:
                withheld[path] = opened.redacted[path]
        return {
            "partition": r.partition,
            "offset": r.offset,
            "key": r.key.decode("utf-8", "replace") if r.key is not None else None,
            "value": jsonable(opened.value),
            "withheld": withheld,
        }

    def _fetch(
        self, topic: str, partition: int, offset: int, limit: int, wait_s: float
    ) -> tuple[list[InRecord], int]:
        """The page and the topic's partition count."""
        try:
            reader = self.kafka.reader(topic)
        except NotFound:
            return [], 0  # shared, but MirrorMaker has not created it here yet
        try:
            ends = reader.end_offsets()
            if partition not in ends:
                raise NotFound(f"topic {topic} has no partition {partition}")
            reader.seek({p: (offset if p == partition else ends[p]) for p in ends})
            got: list[InRecord] = []
            # Up to what was there when asked (a page, not a long poll), within ``wait_s``.
            deadline = time.monotonic() + wait_s
            while len(got) < limit and offset < ends[partition] and time.monotonic() < deadline:
                got += [r for r in reader.poll(timeout_ms=200) if r.partition == partition]
                if reader.positions().get(partition, 0) >= ends[partition]:
                    break
            return got[:limit], len(ends)
        finally:
            reader.close()


def _envelope_keys(sealed: SealedFields, value: dict[str, Any]) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    root = sealed.shape.root
    if root is None:
        return found

    def visit(slot: avro_paths.Slot, raw: Any, location: str) -> Any:
        if isinstance(raw, bytes):
            try:
                header, _ = envelope.parse(raw)
                found.add((header.dek_id, header.dek_version))
            except IntegrityFailure:
                pass
        return raw

    avro_paths.rewrite(root, value, "", visit, sealing=False)
    return found


def forbid_unlinked(department: str, site: str) -> Forbidden:
    return Forbidden(f"department {department} has no link to site {site}")

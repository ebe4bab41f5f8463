"""Keys and policy stay with the owner site: key release there, remote reading here.

Owner side — :class:`KeyRelease`: a remote department (a department of the owner's, whose
client authenticates with the remote *site's* identity key) asks for the data keys of the
envelopes it holds. The owner checks its own agreement for that department and topic (active,
valid now, the key's field among the granted ones) and audits every release
(``federation.keys_released``, key ids and fields, never key bytes). Agreements that require
data-subject consent release nothing across sites (consent is per record; a data key opens a
field of every record): such fields stay withheld remotely — fail closed.

Remote side — :class:`RemoteSources`: what the one delivery loop (dataplane.delivery) reads
for a topic mirrored from its owner site instead of this site's stores:

- the catalog entry and the agreement state the owner *replicated* here
  (:mod:`dataplane.replica`): the same policy as at the owner (consent.policy) decides which
  fields go, unsealed ones included. No replicated entry → nothing at all (fail closed); an
  entry but no approved agreement valid now → what the owner's share type gives anyone
  (``unconditional``: public/internal fields; ``conditional``: nothing);
- the owner's schemas by the owner's ids (mirrored records carry them): replicated with the
  entry, else asked once of the owner's registry over the site link and cached;
- the data keys the owner releases (:class:`OwnerKeys`, cached ``KEY_TTL_S`` seconds, so a
  revocation at the owner bites here within that plus the owner's grant cache even before
  the replicated state says so). A sealed field goes only if both the replicated agreement
  and the owner's key release grant it. Owner unreachable → granted sealed fields null and
  marked ``owner_unreachable``; unsealed fields keep flowing per the replicated agreement.

:class:`RemoteReader` is the paged pull of ``GET /v1/federation/topics/{t}/records``: it
renders through the same loop's Deliverer.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol

from consent.domain import CatalogEntry, Grant
from dataplane.delivery import Deliverer, Sources
from dataplane.fields import sensitive_paths
from dataplane.replica import ReplicatedState
from dataplane.store import Subscription
from exchange import avro_paths
from exchange.auditing import AuditRecord, AuditSink
from exchange.crypto import ciphers, envelope
from exchange.crypto.errors import IntegrityFailure, KeyShredded
from exchange.crypto.fields import FieldOpener, OpenedRecord
from exchange.crypto.keys import Dek, HotDek
from exchange.crypto.sealing import SealedFields
from exchange.errors import Conflict, DependencyUnavailable, Forbidden, NotFound
from exchange.kafka.port import InRecord, KafkaPort
from schemas.classification import field_infos
from schemas.registry import StoredSchema

KEY_TTL_S = 2.0
DOWN_TTL_S = 1.0  # after the owner failed to answer, records are not held up asking again
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
class MirroredReadOnly(Conflict):
    """A change to a topic mirrored from its owner site, attempted here (409)."""

    code = "mirrored_read_only"


def refuse_mirrored(owner_of: Callable[[str], str | None], topic: str, what: str) -> None:
    """Raise MirroredReadOnly if ``topic`` is mirrored here from its owner site."""
    owner = owner_of(topic)
    if owner is not None:
        raise MirroredReadOnly(
            f"topic {topic} is mirrored from site {owner} and read-only here: {what} at {owner}",
            owner_site=owner,
        )


class OwnerLink(Protocol):
    def release(self, topic: str, keys: list[tuple[str, int]]) -> dict[str, Any]: ...

    def schema(self, schema_id: int) -> str: ...


LinkFor = Callable[[str, str], OwnerLink]  # (our department, owner site) → its site link


@dataclass
class _Released:
    granted: frozenset[str]
    keys: dict[tuple[str, int], Dek]
    asked: frozenset[tuple[str, int]]
    at: float


class _Keys:
    """The released keys as a key source for opening (:class:`exchange.crypto.fields.OpenKeys`)."""

    def __init__(self, keys: dict[tuple[str, int], Dek]) -> None:
        self._keys = keys

    def get(self, dek_id: str, version: int) -> Dek:
        dek = self._keys.get((dek_id, version))
        if dek is None:
            raise KeyShredded("key not released by the owner")
        return dek

    def ready_table(self) -> Mapping[Any, HotDek]:
        """No keys ready by envelope prefix here: the opener's flat path then parses the
        header and asks :meth:`get`, the one place that knows what the owner released."""
        return _NONE_READY


_NONE_READY: Mapping[Any, HotDek] = MappingProxyType({})


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


class OwnerKeys:
    """Data keys released by owner sites, per (our department, topic), in memory only, for
    ``ttl`` seconds; an owner that did not answer is not asked again for ``DOWN_TTL_S``."""

    def __init__(self, ttl: float = KEY_TTL_S) -> None:
        self.ttl = ttl
        self._released: dict[tuple[str, str], _Released] = {}
        self._down: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def get(
        self, department: str, topic: str, link: OwnerLink, wanted: set[tuple[str, int]]
    ) -> _Released:
        """Raises DependencyUnavailable when the owner cannot be asked."""
        now = time.monotonic()
        pair = (department, topic)
        with self._lock:
            hit = self._released.get(pair)
            down = self._down.get(pair, 0.0)
        fresh_hit = hit is not None and now - hit.at < self.ttl
        if fresh_hit and hit is not None and wanted <= hit.asked:
            return hit
        if now < down:
            raise DependencyUnavailable("the owner site did not answer a moment ago")
        asked = wanted | (hit.asked if fresh_hit and hit is not None else frozenset())
        try:
            answer = link.release(topic, sorted(asked))
        except DependencyUnavailable:
            with self._lock:
                self._down[pair] = now + DOWN_TTL_S
            raise
        fresh = _Released(
            frozenset(answer.get("granted_fields", [])),
            {(k["dek_id"], int(k["version"])): _dek(k, topic) for k in answer.get("keys", [])},
            frozenset(asked),
            now,
        )
        with self._lock:
            self._released[pair] = fresh
        return fresh


class ReplicaCatalog:
    """Catalog entries of mirrored topics, as their owners replicated them (read-only)."""

    def __init__(self, state: ReplicatedState) -> None:
        self.state = state

    def get(self, topic: str) -> CatalogEntry:
        hit = self.state.entry(topic)
        if hit is None:
            raise NotFound(
                f"topic {topic}: its owner site has not replicated its catalog entry here (yet)"
            )
        return hit.entry


class OwnerSchemas:
    """The owner's schemas by the owner's ids: replicated with the catalog entry, else asked
    of the owner's registry (schemas are immutable: cached)."""

    def __init__(
        self,
        state: ReplicatedState,
        topic: str,
        link: Callable[[], OwnerLink | None],
        cache: dict[tuple[str, int], StoredSchema],
        owner: str,
    ) -> None:
        self.state, self.topic, self.link, self.cache, self.owner = (
            state,
            topic,
            link,
            cache,
            owner,
        )

    def by_id(self, schema_id: int) -> StoredSchema:
        hit = self.cache.get((self.owner, schema_id))
        if hit is not None:
            return hit
        entry = self.state.entry(self.topic)
        text = entry.schemas.get(schema_id) if entry is not None else None
        if text is None:
            link = self.link()
            if link is None:
                raise NotFound(f"schema {schema_id} of {self.owner} is not known here")
            try:
                text = link.schema(schema_id)
            except DependencyUnavailable:
                # a record we cannot decode now is withheld, not a failed delivery
                raise NotFound(f"schema {schema_id} of {self.owner}: owner unreachable") from None
        import fastavro

        parsed = json.loads(text)
        stored = StoredSchema(schema_id, text, fastavro.parse_schema(parsed), field_infos(parsed))
        self.cache[(self.owner, schema_id)] = stored
        return stored

    def latest_fields(self, subject: str) -> list[Any] | None:
        entry = self.state.entry(self.topic)
        if entry is None or entry.entry.value_subject != subject:
            return None
        return list(entry.fields)


class RemoteSealer:
    """Opens sealed fields of a mirrored record with the keys its owner releases to one of our
    departments; a field the owner does not release stays null and is marked why."""

    def __init__(
        self, keys: OwnerKeys, department: str, link: Callable[[], OwnerLink | None]
    ) -> None:
        self.keys = keys
        self.department = department
        self.link = link

    def seal(self, **kw: Any) -> dict[str, Any]:
        raise Forbidden("a mirrored topic is read-only at this site")

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
        released: _Released | None = None
        reason = NOT_GRANTED
        link = self.link() if granted else None
        if link is not None:
            try:
                sealed = fields if isinstance(fields, SealedFields) else None
                wanted = _envelope_keys(sealed, record) if sealed is not None else set()
                released = self.keys.get(self.department, topic, link, wanted)
            except DependencyUnavailable:
                reason = OWNER_UNREACHABLE
        # Only opening here: the keys the owner released stand in for the key store.
        opener = FieldOpener(_Keys(released.keys if released else {}))
        opened = opener.open(
            topic=topic,
            sealed_schema_id=sealed_schema_id,
            key=key,
            record=record,
            fields=fields,
            granted=granted,
        )
        redacted: dict[str, str] = {}
        for path, why in opened.redacted.items():
            if released is None:
                redacted[path] = reason
            elif not _granted(path, set(released.granted)):
                redacted[path] = NOT_GRANTED
            else:
                redacted[path] = why
        return OpenedRecord(opened.value, redacted)


class RemoteSources:
    """For a subscription to a topic mirrored here: the replicated state and the owner's
    schemas and keys (:class:`dataplane.delivery.Sources`); None for our own topics."""

    def __init__(
        self,
        *,
        state: ReplicatedState,
        owner_of: Callable[[str], str | None],
        link_for: LinkFor,
        keys: OwnerKeys | None = None,
    ) -> None:
        self.state = state
        self.owner_of = owner_of
        self.link_for = link_for
        self.keys = keys or OwnerKeys()
        self._schemas: dict[tuple[str, int], StoredSchema] = {}

    def __call__(self, sub: Subscription) -> Sources | None:
        owner = self.owner_of(sub.topic)
        if owner is None:
            return None

        def link() -> OwnerLink | None:
            try:
                return self.link_for(sub.consumer, owner)
            except (Forbidden, NotFound):
                return None  # our department reads nothing sealed of this owner

        return Sources(
            owner,
            ReplicaCatalog(self.state),
            self.state,
            OwnerSchemas(self.state, sub.topic, link, self._schemas, owner),
            RemoteSealer(self.keys, sub.consumer, link),
        )


class RemoteReader:
    """A page of a mirrored topic, rendered by the delivery loop's Deliverer (its rules, its
    audit: ``records.delivered`` on channel ``federation``)."""

    def __init__(
        self, *, kafka: KafkaPort, owner_of: Callable[[str], str | None], deliverer: Deliverer
    ) -> None:
        self.kafka = kafka
        self.owner_of = owner_of
        self.deliverer = deliverer

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
        sub = Subscription(
            "federation-pull",
            topic,
            department,
            client_id,
            None,
            "earliest",
            {},
            "active",
            None,
            None,
        )
        records, partitions = self._fetch(topic, partition, offset, limit, wait_s)
        rendered = self.deliverer.render(sub, records, client_id=client_id, channel="federation")
        src = self.deliverer.sources(sub)
        by_offset: dict[tuple[int, int], dict[str, Any]] = {}
        for w in rendered.withheld:
            by_offset[(w["partition"], w["offset"])] = {
                "partition": w["partition"],
                "offset": w["offset"],
                "withheld_record": w["reason"],
            }
        for item in rendered.records:
            sealed = sensitive_paths(list(src.schemas.by_id(item["schema_id"]).fields))
            value = item["value"]
            withheld = {p: NOT_GRANTED for p in sealed if _missing(value, p)}
            for path, why in item.get("redacted", {}).items():
                withheld[path] = why  # not opened: left out of the value, said why
                _drop(value, path)
            by_offset[(item["partition"], item["offset"])] = {
                "partition": item["partition"],
                "offset": item["offset"],
                "key": item["key"],
                "value": value,
                "withheld": withheld,
            }
        nxt = records[-1].offset + 1 if records else offset
        return {
            "topic": topic,
            "owner": owner,
            "partition": partition,
            "partitions": partitions,
            "records": [by_offset[k] for k in sorted(by_offset)],
            "next_offset": nxt,
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


def _drop(value: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    cur: Any = value
    for part in parents:
        cur = cur.get(part) if isinstance(cur, dict) else None
    if isinstance(cur, dict):
        cur.pop(last, None)


def _missing(value: Any, path: str) -> bool:
    cur = value
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return True
        cur = cur[part]
    return False


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

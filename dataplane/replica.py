"""Catalog entries and agreement state of shared topics, replicated read-only to remote sites.

Owner site — :class:`StatePublisher` (in the gateway): for every site we share topics to, keyed
JSON records in the compacted topic ``state_topic(us, site)``
(:func:`exchange.federation.sites.state_topic`), which that site's MirrorMaker flow copies
with the shared topics:

- ``catalog/<topic>``: the catalog entry (owner department, share type, cipher, value
  subject, ...), the latest value schema's fields with *our* classifications, and every
  version of the value subject and of its sealed form by our schema id (mirrored records
  carry our ids); ``withdrawn: true`` once the topic is no longer shared to the site;
- ``agreement/<id>``: each agreement on a shared topic whose consumer is a department the
  remote site acts for here (a client of it authenticates with the site's key): granted
  fields, purpose, validity and state — approved, suspended, revoked, expired, ... — as here.

A record is written when it changed: at once after an agreement change in this process,
otherwise within ``PERIOD_S`` (changes made by another replica, expiry).

Remote site — :class:`ReplicatedState` (in the gateway): tails the state topics of the sites
we accepted topics from and keeps the latest record per key in memory. It is read-only: only
the owner writes it, and the gateway refuses changes to a mirrored topic here (409).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from consent.agreements import Agreement
from consent.domain import AgreementStatus, CatalogEntry, Grant
from exchange.errors import ConfigurationError, ExchangeError, NotFound
from exchange.federation.sites import Federation, state_topic
from exchange.kafka.port import InRecord, KafkaPort, OutRecord, TopicReaderPort
from schemas.classification import Classification, FieldInfo
from schemas.registry import SchemaVersion

log = logging.getLogger(__name__)

STATE_FORMAT = 1
PERIOD_S = 2.0
HEARTBEAT_S = 10.0  # the owner says "still here, this is current" at least this often
STALE_S = 60.0  # older than this, the replicated agreements grant only public fields
CATALOG = "catalog/"
AGREEMENT = "agreement/"
HEARTBEAT = "site"


# -- the records (pure) --------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteEntry:
    """A mirrored topic's catalog entry as its owner site replicated it."""

    site: str  # the owner site
    entry: CatalogEntry
    fields: tuple[FieldInfo, ...]  # latest value schema, the owner's classifications
    schemas: dict[int, str]  # owner schema id → schema text (value subject and sealed form)
    withdrawn: bool = False


@dataclass(frozen=True)
class RemoteAgreement:
    site: str
    id: str
    topic: str
    owner: str
    consumer: str
    granted_fields: tuple[str, ...]
    purpose: str
    requires_subject_consent: bool
    valid_from: datetime
    valid_until: datetime
    status: str

    def grant(self, now: datetime) -> Grant | None:
        if self.status != AgreementStatus.APPROVED.value:
            return None
        g = Grant(
            agreement_id=self.id,
            topic=self.topic,
            consumer=self.consumer,
            fields=frozenset(self.granted_fields),
            purpose=self.purpose,
            requires_subject_consent=self.requires_subject_consent,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
        )
        return g if g.valid_at(now) else None


@dataclass(frozen=True)
class Heartbeat:
    site: str
    at: datetime  # the owner's clock when it last wrote the state


def _dump(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _iso(dt: datetime) -> str:
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).isoformat()


def catalog_record(
    entry: CatalogEntry,
    fields: Sequence[FieldInfo],
    schemas: Sequence[SchemaVersion],
    *,
    withdrawn: bool = False,
) -> bytes:
    body = {k: getattr(entry, k) for k in CatalogEntry.__dataclass_fields__}
    body["created_at"] = _iso(entry.created_at)
    return _dump(
        {
            "v": STATE_FORMAT,
            "kind": "catalog",
            "entry": body,
            "fields": [
                {
                    "path": f.path,
                    "classification": str(f.classification),
                    "data_subject": f.data_subject,
                    "avro_type": f.avro_type,
                }
                for f in fields
            ],
            "schemas": {str(v.id): v.schema for v in schemas},
            "withdrawn": withdrawn,
        }
    )


def agreement_record(a: Agreement) -> bytes:
    return _dump(
        {
            "v": STATE_FORMAT,
            "kind": "agreement",
            "id": a.id,
            "topic": a.topic,
            "owner": a.owner,
            "consumer": a.consumer,
            "granted_fields": sorted(a.granted_fields or ()),
            "purpose": a.purpose,
            "requires_subject_consent": a.requires_subject_consent,
            "valid_from": _iso(a.valid_from),
            "valid_until": _iso(a.valid_until),
            "status": a.status.value,
        }
    )


def heartbeat_record(at: datetime) -> bytes:
    return _dump({"v": STATE_FORMAT, "kind": "heartbeat", "at": _iso(at)})


def parse_record(site: str, value: bytes) -> RemoteEntry | RemoteAgreement | Heartbeat:
    """One state record; ValueError if it is not one (of a format we know)."""
    try:
        raw = json.loads(value)
        if raw.get("v") != STATE_FORMAT:
            raise ValueError(f"state record format {raw.get('v')!r}")
        if raw["kind"] == "heartbeat":
            return Heartbeat(site, datetime.fromisoformat(raw["at"]))
        if raw["kind"] == "catalog":
            e = dict(raw["entry"])
            e["created_at"] = datetime.fromisoformat(e["created_at"])
            return RemoteEntry(
                site,
                CatalogEntry(**e),
                tuple(
                    FieldInfo(
                        str(f["path"]),
                        Classification(f["classification"]),
                        bool(f["data_subject"]),
                        f["avro_type"],
                    )
                    for f in raw["fields"]
                ),
                {int(k): str(v) for k, v in raw["schemas"].items()},
                bool(raw["withdrawn"]),
            )
        if raw["kind"] == "agreement":
            return RemoteAgreement(
                site,
                str(raw["id"]),
                str(raw["topic"]),
                str(raw["owner"]),
                str(raw["consumer"]),
                tuple(str(f) for f in raw["granted_fields"]),
                str(raw["purpose"]),
                bool(raw["requires_subject_consent"]),
                datetime.fromisoformat(raw["valid_from"]),
                datetime.fromisoformat(raw["valid_until"]),
                str(raw["status"]),
            )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed state record: {exc}") from None
    raise ValueError(f"unknown state record kind {raw.get('kind')!r}")


def okp_x(public_key: str) -> str:
    """A site key ``ed25519:<base64>`` as the ``x`` of its JWK (base64url, no padding)."""
    raw = base64.b64decode(public_key.split(":", 1)[1])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# -- the owner site ------------------------------------------------------------------------
class EntrySource(Protocol):
    def get(self, topic: str) -> CatalogEntry: ...


class SchemaSource(Protocol):
    def schemas(
        self, *, prefix: str = "", deleted: bool = False, latest_only: bool = False
    ) -> list[SchemaVersion]: ...

    def latest_fields(self, subject: str) -> list[FieldInfo] | None: ...


class AgreementSource(Protocol):
    def of_topic(self, topic: str) -> Sequence[Agreement]: ...


class StatePublisher:
    def __init__(
        self,
        *,
        fed: Federation,
        kafka: KafkaPort,
        catalog: EntrySource,
        schemas: SchemaSource,
        agreements: AgreementSource,
        departments_of_site: Callable[[str], set[str]],  # JWK x of the site key → departments
        period_s: float = PERIOD_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.clock = clock
        self._beats: dict[str, float] = {}  # site → monotonic time of our last heartbeat
        self.fed = fed
        self.kafka = kafka
        self.catalog = catalog
        self.schemas = schemas
        self.agreements = agreements
        self.departments_of_site = departments_of_site
        self.period_s = period_s
        self._sent: dict[str, dict[str, bytes]] = {}  # site → key → value last written
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def changed(self, consumer: str, topic: str) -> None:
        """An agreement changed here (Agreements.on_change): publish now, not in a while."""
        if self.fed.shared_out(topic):
            self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="federation-state", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.publish_once()
            except ExchangeError as exc:  # Kafka or the database away: try again later
                log.warning("federation state not published: %s", exc.code)
            except Exception:  # the loop must outlive one bad cycle
                log.exception("federation state not published")
            self._wake.wait(self.period_s)
            self._wake.clear()

    def publish_once(self) -> int:
        """Write what changed for every site we share to; the number of records written."""
        with self._lock:
            try:
                here = self.fed.name()
            except ConfigurationError:
                return 0  # not a site (yet)
            sites = {s.site for s in self.fed.outgoing()} | set(self._sent)
            return sum(self._publish_site(here, site) for site in sorted(sites))

    def _publish_site(self, here: str, site: str) -> int:
        topic = state_topic(here, site)
        if site not in self._sent:
            self.kafka.ensure_topic(topic, 1, compact=True)
            self._sent[site] = self._read_back(topic)
        sent = self._sent[site]
        want = self._records(site)
        for key, old in sent.items():  # topics no longer shared: say so
            if key.startswith(CATALOG) and key not in want and b'"withdrawn":false' in old:
                entry = parse_record(site, old)
                assert isinstance(entry, RemoteEntry)
                want[key] = catalog_record(entry.entry, entry.fields, [], withdrawn=True)
        changed = [(k, v) for k, v in sorted(want.items()) if sent.get(k) != v]
        beat = time.monotonic() - self._beats.get(site, -HEARTBEAT_S) >= HEARTBEAT_S
        out = changed + ([(HEARTBEAT, heartbeat_record(self.clock()))] if beat else [])
        if out:
            self.kafka.send_many_durably(topic, [OutRecord(k.encode(), v) for k, v in out])
            sent.update(changed)
            if beat:
                self._beats[site] = time.monotonic()
        return len(changed)  # state records (heartbeats not counted)

    def _records(self, site: str) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        try:
            depts = self.departments_of_site(okp_x(self.fed.site(site).public_key))
        except NotFound:
            depts = set()
        for topic in self.fed.topics_shared_to(site):
            try:
                entry = self.catalog.get(topic)
            except NotFound:
                continue  # a Kafka topic outside the catalog: nothing to describe
            subject = entry.value_subject
            versions = [
                v
                for v in self.schemas.schemas(prefix=subject)
                if v.subject in (subject, f"{subject}-sealed")
            ]
            fields = self.schemas.latest_fields(subject) or []
            out[CATALOG + topic] = catalog_record(entry, fields, versions)
            for a in self.agreements.of_topic(topic):
                if a.consumer in depts:
                    out[AGREEMENT + a.id] = agreement_record(a)
        return out

    def _read_back(self, topic: str) -> dict[str, bytes]:
        """What the state topic holds already (after a restart: withdraw what we no longer
        share, rewrite nothing that did not change)."""
        return {
            r.key.decode(): r.value for r in read_to_end(self.kafka, topic) if r.key is not None
        }


def read_to_end(kafka: KafkaPort, topic: str) -> list[InRecord]:
    """Every record a (small, compacted) topic holds now."""
    r = kafka.reader(topic)
    try:
        ends = r.end_offsets()
        r.seek({})
        got: list[InRecord] = []
        idle = 0
        while any(pos < ends.get(p, 0) for p, pos in r.positions().items()) and idle < 3:
            batch = r.poll(timeout_ms=300)
            idle = 0 if batch else idle + 1  # compaction gaps: nothing more to come
            got += batch
        return got
    finally:
        r.close()


# -- the remote site -----------------------------------------------------------------------
ChangeListener = Callable[[str, str], None]  # (consumer department, topic)


class ReplicatedState:
    """The owners' replicated catalog entries and agreements, as read from their state
    topics here (read-only)."""

    def __init__(self, *, fed: Federation, kafka: KafkaPort, poll_ms: int = 200) -> None:
        self.fed = fed
        self.kafka = kafka
        self.poll_ms = poll_ms
        self._entries: dict[str, RemoteEntry] = {}  # topic → entry
        self._agreements: dict[str, RemoteAgreement] = {}  # id → agreement
        self._beats: dict[str, datetime] = {}  # owner site → its last heartbeat
        self._readers: dict[str, TopicReaderPort] = {}  # owner site → reader
        self._listeners: list[ChangeListener] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_change(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    # -- queries (what the gateway and delivery read) -------------------------------------
    def entry(self, topic: str) -> RemoteEntry | None:
        """The replicated entry of a topic we mirror from its owner, unless withdrawn."""
        owner = self.fed.owner_of(topic)
        with self._lock:
            hit = self._entries.get(topic)
        if hit is None or hit.withdrawn or hit.site != owner:
            return None
        return hit

    def entries(self) -> list[RemoteEntry]:
        with self._lock:
            topics = sorted(self._entries)
        return [e for t in topics if (e := self.entry(t)) is not None]

    def agreements(self, topic: str) -> list[RemoteAgreement]:
        owner = self.fed.owner_of(topic)
        with self._lock:
            found = [a for a in self._agreements.values() if a.topic == topic]
        return sorted((a for a in found if a.site == owner), key=lambda a: a.id)

    def as_of(self, site: str) -> datetime | None:
        """When ``site`` last said its state here is current (its heartbeat), if ever."""
        with self._lock:
            return self._beats.get(site)

    def stale(self, site: str, now: datetime) -> bool:
        at = self.as_of(site)
        return at is None or (now - at).total_seconds() > STALE_S

    def current_grant(self, consumer_dept: str, topic: str, now: datetime) -> Grant | None:
        """The replicated approved agreement valid now. While the owner's state is stale (no
        heartbeat for STALE_S: cut off, or an owner that never said), it grants only the
        fields the owner classified public — fail closed on what we cannot know is current."""
        grants = [
            g
            for a in self.agreements(topic)
            if a.consumer == consumer_dept and (g := a.grant(now)) is not None
        ]
        if not grants:
            return None
        best = max(grants, key=lambda g: g.valid_from)
        entry = self.entry(topic)
        if entry is None or not self.stale(entry.site, now):
            return best
        public = {f.path for f in entry.fields if f.classification == Classification.PUBLIC}
        return replace(best, fields=best.fields & frozenset(public))

    # -- tailing ---------------------------------------------------------------------------
    def apply(self, site: str, record: InRecord) -> None:
        try:
            parsed = parse_record(site, record.value)
        except ValueError as exc:
            log.warning("state record from %s ignored: %s", site, exc)
            return
        with self._lock:
            if isinstance(parsed, Heartbeat):
                self._beats[site] = parsed.at
            elif isinstance(parsed, RemoteEntry):
                self._entries[parsed.entry.topic] = parsed
            else:
                self._agreements[parsed.id] = parsed
        if isinstance(parsed, RemoteAgreement):
            for listener in list(self._listeners):
                listener(parsed.consumer, parsed.topic)

    def poll_once(self) -> int:
        """Read what arrived on every owner's state topic; the number of records applied."""
        try:
            here = self.fed.name()
            owners = self.fed.owner_sites()
        except ExchangeError:
            return 0
        n = 0
        for owner in owners:
            reader = self._readers.get(owner)
            if reader is None:
                try:
                    reader = self.kafka.reader(state_topic(owner, here))
                except NotFound:
                    continue  # MirrorMaker has not created it yet
                reader.seek({})
                self._readers[owner] = reader
            for r in reader.poll(timeout_ms=max(1, self.poll_ms // max(1, len(owners)))):
                self.apply(owner, r)
                n += 1
        return n

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="federation-replica", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.poll_once():
                    self._stop.wait(self.poll_ms / 1000)
            except ExchangeError as exc:
                log.warning("federation state not read: %s", exc.code)
                self._stop.wait(1.0)
            except Exception:  # the loop must outlive one bad record or cycle
                log.exception("federation state not read")
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for r in self._readers.values():
            r.close()
        self._readers.clear()

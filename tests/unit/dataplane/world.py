"""The data-plane use cases wired for unit tests: real registry, catalog, field crypto (over
an in-memory KMS) and control-plane database (SQLite in a temp dir); in-memory fakes for the
Kafka port, the audit sink and the grant/consent ports, which the tests set directly."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from consent.catalog import Catalog
from consent.domain import CatalogEntry, ConsentRef, ConsentStatus, Grant
from dataplane.delivery import Deliverer
from dataplane.group_commit import GroupCommitter
from dataplane.idempotency import IdempotencyStore
from dataplane.outcome import KafkaOutcomes
from dataplane.publish import Publisher
from dataplane.store import Subscription
from exchange.auditing import MemoryAuditSink
from exchange.crypto import FieldCrypto, build_field_crypto
from exchange.crypto.kms_memory import MemoryKms
from exchange.db import make_engine, migrate, session_factory
from exchange.errors import KafkaUnavailable, NotFound
from exchange.identity.service import IdentityService
from exchange.identity.tokens import Principal
from exchange.kafka.port import InRecord, OutRecord, Position
from exchange.settings import Settings
from schemas.registry import SchemaRegistry

NOW = datetime(2026, 6, 1, tzinfo=UTC)


class Crash(BaseException):
    """The process dies here: no ``except Exception`` and no clean-up runs after it."""


class FakeKafka:
    """The Kafka port in memory: one partition per topic, transactions all-or-nothing and one
    at a time (like a transactional producer). ``missing`` topics raise NotFound; ``delay_s``
    keeps each transaction open that long so concurrent requests pile up behind it. Aborted
    transactions use up their offsets, as in Kafka; ``crash_before_commit`` leaves one open
    (holding back the last stable offset) until :meth:`time_out_open` aborts it."""

    def __init__(self) -> None:
        self.logs: dict[str, list[OutRecord]] = {}
        self.at: dict[str, list[int]] = {}  # the offset of each record in ``logs``
        self.next: dict[str, int] = {}  # the next offset, aborted transactions counted
        self.open_from: dict[str, int] = {}  # first offset of a transaction left open
        self.fail_commit = False
        self.crash_before_commit = False
        self.missing: set[str] = set()
        self.delay_s = 0.0
        self.transactions: list[list[str]] = []  # topics of each attempted transaction
        self._lock = threading.Lock()

    def publish_atomically(
        self,
        topic: str,
        records: Sequence[OutRecord],
        before_commit: Callable[[list[Position]], None] | None = None,
    ) -> list[Position]:
        hook = None if before_commit is None else (lambda ps: before_commit(ps[0]))
        return self.publish_transaction([(topic, records)], hook)[0]

    def publish_transaction(
        self,
        parts: Sequence[tuple[str, Sequence[OutRecord]]],
        before_commit: Callable[[list[list[Position]]], None] | None = None,
    ) -> list[list[Position]]:
        with self._lock:
            self.transactions.append([t for t, _ in parts])
            if self.delay_s:
                time.sleep(self.delay_s)
            staged: dict[str, list[OutRecord]] = {}
            positions: list[list[Position]] = []
            for topic, records in parts:
                if topic in self.missing:
                    raise NotFound(f"Kafka topic {topic} does not exist")
                pending = staged.setdefault(topic, [])
                base = self.next.get(topic, 0) + len(pending)
                positions.append([Position(0, base + i) for i in range(len(records))])
                pending.extend(records)
            starts = {t: self.next.get(t, 0) for t in staged}
            for topic, records in staged.items():
                self.next[topic] = starts[topic] + len(records)
            if before_commit is not None:
                before_commit(positions)
            if self.crash_before_commit:
                self.open_from.update(starts)
                raise Crash("gateway killed inside the transaction")
            if self.fail_commit:
                raise KafkaUnavailable("commit failed")
            for topic, records in staged.items():
                self.logs.setdefault(topic, []).extend(records)
                self.at.setdefault(topic, []).extend(starts[topic] + i for i in range(len(records)))
            return positions

    def time_out_open(self) -> None:
        """The coordinator aborts the transactions a crashed producer left open."""
        self.open_from.clear()

    def reader(self, topic: str) -> FakeReader:
        return FakeReader(self, topic)

    def end_offsets(self, topic: str) -> dict[int, int]:
        return FakeReader(self, topic).end_offsets()

    def read(self, topic: str) -> list[InRecord]:
        return [
            InRecord(topic, 0, at, 0, r.key, r.value, list(r.headers))
            for at, r in zip(self.at.get(topic, []), self.logs.get(topic, []), strict=True)
        ]


class FakeReader:
    """A read_committed reader of a FakeKafka topic (partition 0)."""

    def __init__(self, kafka: FakeKafka, topic: str) -> None:
        self.kafka, self.topic, self.pos = kafka, topic, 0

    def stable_end(self) -> int:
        end = self.kafka.next.get(self.topic, 0)
        return min(end, self.kafka.open_from.get(self.topic, end))

    def end_offsets(self) -> dict[int, int]:
        return {0: self.stable_end()}

    def seek(self, offsets: dict[int, int]) -> None:
        self.pos = offsets.get(0, 0)

    def seek_to_end(self) -> None:
        self.pos = self.stable_end()

    def positions(self) -> dict[int, int]:
        return {0: self.pos}

    def poll(self, timeout_ms: int = 500, max_records: int = 500) -> list[InRecord]:
        end = self.stable_end()
        out = [r for r in self.kafka.read(self.topic) if self.pos <= r.offset < end]
        out = out[:max_records]
        self.pos = out[-1].offset + 1 if len(out) == max_records else end
        if not out and timeout_ms > 0:
            time.sleep(0.005)  # a real poll waits for records: no busy loop in a tailing thread
        return out

    def close(self) -> None:
        pass


@dataclass
class FakeGrants:
    grants: dict[tuple[str, str], Grant] = field(default_factory=dict)
    listeners: list[Callable[[str, str], None]] = field(default_factory=list)

    def current_grant(self, consumer_dept: str, topic: str, now: datetime) -> Grant | None:
        return self.grants.get((consumer_dept, topic))

    def on_change(self, listener: Callable[[str, str], None]) -> None:
        self.listeners.append(listener)

    def set(self, g: Grant | None, consumer: str, topic: str) -> None:
        if g is None:
            self.grants.pop((consumer, topic), None)
        else:
            self.grants[(consumer, topic)] = g
        for listener in self.listeners:
            listener(consumer, topic)


@dataclass
class FakeConsents:
    by_subject: dict[str, ConsentRef] = field(default_factory=dict)

    def active_consents(
        self, consumer: str, topic: str, subjects: set[str], now: datetime
    ) -> dict[str, ConsentRef]:
        return {s: c for s, c in self.by_subject.items() if s in subjects}


@dataclass
class World:
    registry: SchemaRegistry
    catalog: Catalog
    crypto: FieldCrypto
    kafka: FakeKafka
    audit: MemoryAuditSink
    grants: FakeGrants
    consents: FakeConsents
    publisher: Publisher
    deliverer: Deliverer

    def topic(
        self, schema: dict[str, Any], *, owner: str = "health", share: str = "conditional"
    ) -> CatalogEntry:
        name = f"{owner}.t{len(self.kafka.logs) + len(self.catalog.search())}"
        subject = f"{name}-value"
        self.registry.register(subject, json.dumps(schema))
        return self.catalog.create(
            CatalogEntry(
                topic=name,
                owner=owner,
                title=name,
                description="",
                update_cycle="daily",
                share_type=share,  # type: ignore[arg-type]
                value_subject=subject,
                partitions=1,
                cipher="AES256_GCM",
                legal_basis=None,
                created_at=NOW,
            )
        )


def build_world(tmp: Path) -> World:
    settings = Settings(home=tmp)
    engine = make_engine(f"sqlite:///{tmp / 'cp.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    identity = IdentityService(sessions)
    for dept in ("health", "civil"):
        identity.create_department(dept, dept.title(), "city")
    audit = MemoryAuditSink()
    registry = SchemaRegistry(sessions, audit)
    catalog = Catalog(sessions, audit)
    crypto = build_field_crypto(settings, sessions, audit, b"k" * 32, kms=MemoryKms())
    kafka = FakeKafka()
    grants, consents = FakeGrants(), FakeConsents()
    idempotency = IdempotencyStore(sessions, outcomes=KafkaOutcomes(kafka), clock=lambda: NOW)
    publisher = Publisher(
        schemas=registry,
        catalog=catalog,
        sealer=crypto,
        committer=GroupCommitter(kafka, audit, staging=idempotency),
        idempotency=idempotency,
    )
    deliverer = Deliverer(
        catalog=catalog,
        grants=grants,
        consents=consents,
        schemas=registry,
        sealer=crypto,
        audit=audit,
        clock=lambda: NOW,
    )
    return World(registry, catalog, crypto, kafka, audit, grants, consents, publisher, deliverer)


def principal(dept: str, *roles: str, client: str = "c1") -> Principal:
    return Principal(client, dept, frozenset(roles), "t", "iss", 0)


def grant(consumer: str, topic: str, fields: set[str], *, consent: bool = False) -> Grant:
    return Grant(
        "agr-1",
        topic,
        consumer,
        frozenset(fields),
        "service",
        consent,
        NOW - timedelta(days=1),
        NOW + timedelta(days=30),
    )


def consent(consumer: str, topic: str, fields: set[str] | None = None) -> ConsentRef:
    return ConsentRef(
        "cns-1",
        1,
        consumer,
        topic,
        "service",
        frozenset(fields or ()),
        ConsentStatus.ACTIVE,
        NOW - timedelta(days=1),
        NOW + timedelta(days=30),
    )


def subscription(consumer: str, topic: str, fields: set[str] | None = None) -> Subscription:
    return Subscription(
        "sub-1",
        topic,
        consumer,
        "c2",
        frozenset(fields) if fields else None,
        "earliest",
        {},
        "active",
        None,
        None,
    )

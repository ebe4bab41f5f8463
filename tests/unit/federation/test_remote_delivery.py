"""Replicated catalog/agreement state and the remote delivery path, without a broker.

The owner ("league") publishes through the real publisher, registry and field crypto into an
in-memory Kafka; its StatePublisher writes the state topic there; the remote ("region")
ReplicatedState reads it back from the same in-memory Kafka (what MirrorMaker does between two
clusters) and the remote Deliverer renders mirrored records with it, keys released by the
owner's real KeyRelease through a fake site link (no second gateway here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from consent.agreements import Agreement
from consent.domain import AgreementStatus, CatalogEntry
from dataplane.delivery import Deliverer
from dataplane.federation import KeyRelease, OwnerKeys, RemoteSources
from dataplane.publish import Batch, NewRecord
from dataplane.replica import ReplicatedState, StatePublisher
from exchange.auditing import MemoryAuditSink
from exchange.errors import DependencyUnavailable, Forbidden, NotFound
from exchange.federation.sites import Federation, state_topic
from exchange.kafka.port import OutRecord, Position
from tests.support.scenario import PERSON_SCHEMA, person
from tests.unit.dataplane.world import (
    NOW,
    FakeConsents,
    FakeGrants,
    FakeKafka,
    FakeReader,
    World,
    build_world,
    grant,
    principal,
    subscription,
)
from tests.unit.federation.test_sites import pair

REMOTE_DEPT = "civil"  # a department at both sites; at the owner it acts for the region


class StateKafka:
    """The in-memory Kafka with the two calls the state publisher makes besides reading."""

    def __init__(self, kafka: FakeKafka) -> None:
        self.kafka = kafka
        self.logs = kafka.logs

    def ensure_topic(self, name: str, partitions: int = 1, **kw: Any) -> None:
        self.kafka.logs.setdefault(name, [])

    def send_many_durably(self, topic: str, records: Sequence[OutRecord]) -> list[Position]:
        return self.kafka.publish_atomically(topic, records)

    def reader(self, topic: str) -> FakeReader:
        if topic not in self.kafka.logs:
            raise NotFound(f"Kafka topic {topic} does not exist")
        return self.kafka.reader(topic)


class NoCatalog:
    def get(self, topic: str) -> CatalogEntry:
        raise NotFound(f"topic {topic} not found")


@dataclass
class OwnerAgreements:
    items: list[Agreement]

    def of_topic(self, topic: str) -> list[Agreement]:
        return [a for a in self.items if a.topic == topic]


class Link:
    """The site link to the owner's gateway, reduced to the owner's key release."""

    def __init__(self, release: KeyRelease, w: World) -> None:
        self.release_ = release
        self.w = w
        self.down = False

    def release(self, topic: str, keys: list[tuple[str, int]]) -> dict[str, Any]:
        if self.down:
            raise DependencyUnavailable("owner site unreachable")
        return self.release_.release(
            client_id="site-link", department=REMOTE_DEPT, topic=topic, wanted=keys
        )

    def schema(self, schema_id: int) -> str:
        if self.down:
            raise DependencyUnavailable("owner site unreachable")
        return self.w.registry.by_id(schema_id).schema


def agreement(topic: str, fields: Sequence[str], status: str = "approved", **kw: Any) -> Agreement:
    base = Agreement(
        id="agr-remote",
        topic=topic,
        owner="health",
        consumer=REMOTE_DEPT,
        requested_by="c9",
        fields=tuple(fields),
        granted_fields=tuple(fields),
        purpose="regional statistics",
        legal_basis=None,
        valid_from=NOW - timedelta(days=1),
        valid_until=NOW + timedelta(days=30),
        requires_subject_consent=False,
        status=AgreementStatus(status),
        reason=None,
        requested_at=NOW - timedelta(days=2),
        respond_by=NOW + timedelta(days=10),
        decided_at=NOW - timedelta(days=1),
        decided_by="steward",
    )
    return replace(base, **kw)


@dataclass
class Two:
    w: World
    topic: str
    league: Federation
    region: Federation
    owner_grants: FakeGrants
    agreements: OwnerAgreements
    publisher: StatePublisher
    state: ReplicatedState
    link: Link
    remote: Deliverer

    def replicate(self) -> int:
        self.publisher.publish_once()
        return self.state.poll_once()

    def read(self, fields: set[str] | None = None) -> Any:
        sub = subscription(REMOTE_DEPT, self.topic, fields)
        records = self.w.kafka.read(self.topic)
        return self.remote.render(sub, records, client_id="c2", channel="pull")


@pytest.fixture
def two(tmp_path: Path) -> Two:
    w = build_world(tmp_path)
    kafka = StateKafka(w.kafka)
    entry = w.topic(PERSON_SCHEMA)
    w.publisher.publish(
        principal("health", "publisher"),
        entry,
        Batch([NewRecord(f"k{i}", person(i)) for i in range(3)]),
    )
    league, region = pair(tmp_path)
    league.share(entry.topic, "region")
    region.accept(entry.topic, league.grant("region", "127.0.0.1:1"))
    owner_grants = FakeGrants()
    agreements = OwnerAgreements([])
    publisher = StatePublisher(
        fed=league,
        kafka=kafka,  # type: ignore[arg-type]
        catalog=w.catalog,
        schemas=w.registry,
        agreements=agreements,
        departments_of_site=lambda x: {REMOTE_DEPT},
        clock=lambda: NOW,
    )
    state = ReplicatedState(fed=region, kafka=kafka)  # type: ignore[arg-type]
    release = KeyRelease(
        shared=league.shared_out,
        grants=owner_grants,
        keys=w.crypto.keys,
        audit=w.audit,
        clock=lambda: NOW,
    )
    link = Link(release, w)
    remote = Deliverer(
        catalog=NoCatalog(),
        grants=FakeGrants(),
        consents=FakeConsents(),
        schemas=w.registry,  # this site's registry: never asked for a mirrored topic's ids
        sealer=None,
        audit=MemoryAuditSink(),
        clock=lambda: NOW,
        remote=RemoteSources(
            state=state,
            owner_of=region.owner_of,
            link_for=lambda d, s: link,
            keys=OwnerKeys(ttl=0),  # every rendering asks the owner (no 2 s key cache)
        ),
    )
    state.on_change(remote.forget)
    return Two(
        w, entry.topic, league, region, owner_grants, agreements, publisher, state, link, remote
    )


def agree(t: Two, fields: set[str], *, owner_fields: set[str] | None = None) -> None:
    """The same agreement at the owner (its key release) and in its replicated state."""
    t.agreements.items = [agreement(t.topic, sorted(fields))]
    t.owner_grants.set(grant(REMOTE_DEPT, t.topic, owner_fields or fields), REMOTE_DEPT, t.topic)


def test_without_replicated_state_nothing_is_delivered(two: Two) -> None:
    sub = subscription(REMOTE_DEPT, two.topic)
    with pytest.raises(NotFound, match="not replicated"):
        two.remote.ensure_allowed(sub, "c2")
    with pytest.raises(NotFound):
        two.read()


def test_the_catalog_entry_and_the_agreement_are_replicated(two: Two) -> None:
    agree(two, {"name"})
    assert two.replicate() == 3  # the entry, the agreement, the owner's heartbeat
    assert two.state.as_of("league") == NOW
    entry = two.state.entry(two.topic)
    assert entry is not None and entry.site == "league" and entry.entry.owner == "health"
    assert {f.path: str(f.classification) for f in entry.fields}["citizen_id"] == "sensitive"
    assert entry.schemas  # the owner's ids: plain and sealed forms
    [a] = two.state.agreements(two.topic)
    assert (a.consumer, a.granted_fields, a.status) == (REMOTE_DEPT, ("name",), "approved")
    assert two.publisher.publish_once() == 0  # nothing changed, nothing written


def test_a_narrowed_agreement_delivers_only_its_fields_sealed_and_unsealed(two: Two) -> None:
    agree(two, {"name"})
    two.replicate()
    out = two.read()
    assert [r["value"] for r in out.records] == [{"name": f"Resident {i}"} for i in range(3)]
    agree(two, {"name", "citizen_id"})
    two.replicate()
    values = [r["value"] for r in two.read().records]
    assert values == [
        {"name": person(i)["name"], "citizen_id": person(i)["citizen_id"]} for i in range(3)
    ]


def test_a_sealed_field_needs_the_owner_s_key_release_too(two: Two) -> None:
    agree(two, {"name", "citizen_id"}, owner_fields={"name"})  # owner revoked it, say
    two.replicate()
    [first, *_] = two.read().records
    assert first["value"] == {"name": "Resident 0", "citizen_id": None}
    assert first["redacted"] == {"citizen_id": "not_granted"}


def test_owner_unreachable_withholds_sealed_fields_and_unsealed_ones_flow(two: Two) -> None:
    agree(two, {"name", "citizen_id"})
    two.replicate()
    two.link.down = True
    [first, *_] = two.read().records
    assert first["value"] == {"name": "Resident 0", "citizen_id": None}
    assert first["redacted"] == {"citizen_id": "owner_unreachable"}


@pytest.mark.parametrize("status", ["suspended", "revoked"])
def test_a_replicated_suspension_or_revocation_stops_unsealed_fields(two: Two, status: str) -> None:
    agree(two, {"name"})
    two.replicate()
    sub = subscription(REMOTE_DEPT, two.topic)
    two.remote.ensure_allowed(sub, "c2")
    two.agreements.items = [agreement(two.topic, ["name"], status=status)]
    assert two.replicate() == 1
    with pytest.raises(Forbidden):  # the cached grant was dropped on the change
        two.remote.ensure_allowed(sub, "c2")
    out = two.read()
    assert out.records == [] and {w["reason"] for w in out.withheld} == {"no_agreement"}


def test_an_expired_agreement_grants_nothing(two: Two) -> None:
    two.agreements.items = [agreement(two.topic, ["name"], valid_until=NOW - timedelta(seconds=1))]
    two.replicate()
    assert two.state.current_grant(REMOTE_DEPT, two.topic, NOW) is None


def test_only_agreements_of_departments_the_site_acts_for_are_replicated(two: Two) -> None:
    two.agreements.items = [agreement(two.topic, ["name"], id="agr-local", consumer="health")]
    two.replicate()
    assert two.state.agreements(two.topic) == []


def test_an_unshared_topic_is_withdrawn_at_the_remote(two: Two) -> None:
    agree(two, {"name"})
    two.replicate()
    two.league.unshare(two.topic, "region")
    assert two.replicate() == 1
    assert two.state.entry(two.topic) is None
    with pytest.raises(NotFound):
        two.read()


def test_a_restarted_owner_rewrites_nothing_that_did_not_change(two: Two) -> None:
    agree(two, {"name"})
    two.replicate()
    again = StatePublisher(
        fed=two.league,
        kafka=two.publisher.kafka,
        catalog=two.w.catalog,
        schemas=two.w.registry,
        agreements=two.agreements,
        departments_of_site=lambda x: {REMOTE_DEPT},
    )
    assert again.publish_once() == 0
    assert state_topic("league", "region") in two.w.kafka.logs


def test_garbage_on_the_state_topic_is_ignored(two: Two) -> None:
    kafka = two.publisher.kafka
    kafka.send_many_durably(  # type: ignore[attr-defined]
        state_topic("league", "region"), [OutRecord(b"catalog/x", b"{not json")]
    )
    agree(two, {"name"})
    two.replicate()
    assert two.state.entry(two.topic) is not None


def test_a_stale_owner_state_grants_only_public_fields(two: Two) -> None:
    """No heartbeat from the owner for a minute (cut off): what the replicated agreement
    grants is narrowed to the fields the owner classified public."""
    two.publisher.clock = lambda: NOW - timedelta(minutes=5)
    agree(two, {"name", "citizen_id"})
    two.replicate()
    assert two.state.stale("league", NOW)
    values = [r["value"] for r in two.read().records]
    assert values == [{"name": f"Resident {i}"} for i in range(3)]

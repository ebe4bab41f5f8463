"""The delivery use case without a broker: grants decide the fields, only those sealed fields
are opened, consent withholds whole records, and every rendering is audited."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from dataplane import delivery
from dataplane.delivery import OVERLAP_AUDIT_FROM
from dataplane.publish import Batch, NewRecord
from exchange.auditing import AuditRecord, MemoryAuditSink
from exchange.errors import DependencyUnavailable, Forbidden
from tests.support.scenario import PERSON_SCHEMA, person
from tests.unit.dataplane.world import (
    World,
    build_world,
    consent,
    grant,
    principal,
    subscription,
)


@pytest.fixture
def w(tmp_path: Path) -> World:
    return build_world(tmp_path)


def _published(w: World, n: int = 3) -> str:
    entry = w.topic(PERSON_SCHEMA)
    records = [NewRecord(f"k{i}", person(i)) for i in range(n)]
    w.publisher.publish(principal("health", "publisher"), entry, Batch(records))
    return entry.topic


def test_without_a_grant_a_conditional_topic_delivers_nothing(w: World) -> None:
    topic = _published(w)
    sub = subscription("civil", topic)
    with pytest.raises(Forbidden):
        w.deliverer.ensure_allowed(sub, "c2")
    assert w.audit.records[-1].type == "delivery.denied"
    out = w.deliverer.render(sub, w.kafka.read(topic), client_id="c2", channel="pull")
    assert out.records == [] and {x["reason"] for x in out.withheld} == {"no_agreement"}
    assert w.audit.records[-1].type == "records.withheld"


def test_only_granted_fields_are_delivered_and_opened(w: World) -> None:
    topic = _published(w)
    w.grants.set(grant("civil", topic, {"name", "citizen_id"}), "civil", topic)
    sub = subscription("civil", topic)
    w.deliverer.ensure_allowed(sub, "c2")
    out = w.deliverer.render(sub, w.kafka.read(topic), client_id="c2", channel="pull")
    assert [r["value"] for r in out.records] == [
        {"name": f"Resident {i}", "citizen_id": person(i)["citizen_id"]} for i in range(3)
    ]
    delivered = w.audit.records[-1]
    assert delivered.type == "records.delivered"
    assert delivered.data["fields"] == ["citizen_id", "name"] and delivered.data["count"] == 3


def test_the_subscriber_s_own_selection_narrows_the_grant(w: World) -> None:
    topic = _published(w, 1)
    w.grants.set(grant("civil", topic, {"name", "citizen_id", "phone"}), "civil", topic)
    out = w.deliverer.render(
        subscription("civil", topic, {"phone"}), w.kafka.read(topic), client_id="c", channel="sse"
    )
    assert out.records[0]["value"] == {"phone": person(0)["phone"]}


def test_a_revocation_bites_at_once_in_this_process(w: World) -> None:
    topic = _published(w, 1)
    sub = subscription("civil", topic)
    w.grants.set(grant("civil", topic, {"name"}), "civil", topic)
    w.deliverer.ensure_allowed(sub, "c2")
    w.grants.set(None, "civil", topic)  # on_change drops the cached grant
    with pytest.raises(Forbidden):
        w.deliverer.ensure_allowed(sub, "c2")


def test_consent_withholds_records_of_subjects_without_one(w: World) -> None:
    topic = _published(w, 2)
    w.grants.set(grant("civil", topic, {"name", "citizen_id"}, consent=True), "civil", topic)
    w.consents.by_subject[person(1)["citizen_id"]] = consent("civil", topic)
    out = w.deliverer.render(
        subscription("civil", topic), w.kafka.read(topic), client_id="c2", channel="pull"
    )
    assert [r["value"]["name"] for r in out.records] == ["Resident 1"]
    assert [x["reason"] for x in out.withheld] == ["no_subject_consent"]
    withheld = w.audit.records[-1]
    assert withheld.type == "records.withheld"
    assert withheld.subjects == (person(0)["citizen_id"],)


def test_undecodable_records_are_withheld_not_fatal(w: World) -> None:
    topic = _published(w, 1)
    w.grants.set(grant("civil", topic, {"name"}), "civil", topic)
    good = w.kafka.read(topic)
    broken = [type(good[0])(topic, 0, 9, 0, None, b"\x00garbage", [])]
    out = w.deliverer.render(
        subscription("civil", topic), good + broken, client_id="c2", channel="pull"
    )
    assert len(out.records) == 1 and out.withheld == [
        {"partition": 0, "offset": 9, "reason": "undecodable"}
    ]


def _large_page(w: World, refused: int = -1) -> tuple[str, list[Any]]:
    """A page of OVERLAP_AUDIT_FROM + 6 records, one of them undecodable; with ``refused``
    >= 0 the grant needs consent and every subject but that one gave it."""
    n = OVERLAP_AUDIT_FROM + 5
    topic = _published(w, n)
    needs = refused >= 0
    w.grants.set(grant("civil", topic, {"name", "citizen_id"}, consent=needs), "civil", topic)
    for i in range(n) if needs else ():
        if i != refused:
            w.consents.by_subject[person(i)["citizen_id"]] = consent("civil", topic)
    records = w.kafka.read(topic)
    broken = type(records[0])(topic, 0, 10_000, 0, None, b"\x00garbage", [])
    return topic, [*records[:3], broken, *records[3:]]


@pytest.mark.parametrize("refused", [-1, 2])
def test_a_large_page_audits_while_shaping_and_answers_as_a_small_one(
    w: World, refused: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From OVERLAP_AUDIT_FROM records the audit append runs beside the shaping: the same
    records, withheld items and audit events as the one-step path."""
    topic, page = _large_page(w, refused)
    sub = subscription("civil", topic)
    overlapped = w.deliverer.render(sub, page, client_id="c2", channel="pull")
    events = w.audit.records[-2:]
    monkeypatch.setattr(delivery, "OVERLAP_AUDIT_FROM", 10**9)
    serial = w.deliverer.render(sub, page, client_id="c2", channel="pull")
    assert overlapped == serial
    assert [(e.type, e.data, e.subjects) for e in events] == [
        (e.type, e.data, e.subjects) for e in w.audit.records[-2:]
    ]
    assert [e.type for e in events] == ["records.delivered", "records.withheld"]
    assert events[0].data["count"] == len(overlapped.records) >= OVERLAP_AUDIT_FROM
    assert len(overlapped.withheld) == (2 if refused >= 0 else 1)


class _SlowAudit(MemoryAuditSink):
    def __init__(self, fail: bool) -> None:
        super().__init__()
        self.fail = fail

    def append_many(self, records: Sequence[AuditRecord]) -> None:
        time.sleep(0.2)  # a slow durable write: the page must wait for it
        if self.fail:
            raise DependencyUnavailable("audit log unavailable")
        super().append_many(records)


@pytest.mark.parametrize("fail", [False, True])
def test_a_large_page_goes_out_only_once_its_audit_is_durable(w: World, fail: bool) -> None:
    topic, page = _large_page(w)
    w.deliverer.audit = audit = _SlowAudit(fail)
    sub = subscription("civil", topic)
    if fail:  # fail closed: no page without its audit events
        with pytest.raises(DependencyUnavailable):
            w.deliverer.render(sub, page, client_id="c2", channel="pull")
        assert audit.records == []
        return
    out = w.deliverer.render(sub, page, client_id="c2", channel="pull")
    assert [e.type for e in audit.records] == ["records.delivered", "records.withheld"]
    assert audit.records[0].data["count"] == len(out.records) == OVERLAP_AUDIT_FROM + 5

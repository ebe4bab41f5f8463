"""The owner's key-release decision (dataplane.federation.KeyRelease), without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consent.domain import Grant
from dataplane.federation import KeyRelease
from exchange.auditing import MemoryAuditSink
from exchange.crypto import ciphers
from exchange.crypto.errors import KeyShredded
from exchange.crypto.keys import Dek
from exchange.errors import NotFound

NOW = datetime(2026, 6, 1, tzinfo=UTC)
TOPIC = "civil.residents"


def dek(dek_id: str, field: str, topic: str = TOPIC) -> Dek:
    spec = ciphers.spec_named("AES256_GCM")
    key = bytes(32)
    return Dek(dek_id, 1, spec, topic, field, key, ciphers.aead_for(spec, key))


KEYS = {
    ("d-cid", 1): dek("d-cid", "citizen_id"),
    ("d-phone", 1): dek("d-phone", "phone"),
    ("d-street", 1): dek("d-street", "address.street"),
    ("d-other", 1): dek("d-other", "citizen_id", topic="civil.other"),
}


class Keys:
    def get(self, dek_id: str, version: int) -> Dek:
        if dek_id == "d-shredded":
            raise KeyShredded("gone")
        return KEYS[(dek_id, version)]


class Grants:
    def __init__(self, grant: Grant | None) -> None:
        self.grant = grant

    def current_grant(self, consumer_dept: str, topic: str, now: datetime) -> Grant | None:
        g = self.grant
        ok = g and g.consumer == consumer_dept and g.topic == topic and g.valid_at(now)
        return g if ok else None


def grant(fields: set[str], consent: bool = False) -> Grant:
    return Grant(
        "ag-1",
        TOPIC,
        "rhealth",
        frozenset(fields),
        "statistics",
        consent,
        NOW - timedelta(days=1),
        NOW + timedelta(days=1),
    )


def release(
    g: Grant | None, wanted: list[tuple[str, int]]
) -> tuple[dict[str, Any], MemoryAuditSink]:
    audit = MemoryAuditSink()
    kr = KeyRelease(
        shared=lambda t: t == TOPIC, grants=Grants(g), keys=Keys(), audit=audit, clock=lambda: NOW
    )
    return kr.release(client_id="c1", department="rhealth", topic=TOPIC, wanted=wanted), audit


ALL = [("d-cid", 1), ("d-phone", 1), ("d-street", 1), ("d-other", 1), ("d-shredded", 1)]


def test_only_granted_fields_of_this_topic_are_released_and_audited() -> None:
    out, audit = release(grant({"name", "citizen_id"}), ALL)
    assert [k["field"] for k in out["keys"]] == ["citizen_id"]
    assert out["keys"][0]["dek_id"] == "d-cid"
    [ev] = audit.records
    assert ev.type == "federation.keys_released" and ev.outcome == "ok"
    assert ev.data["keys"] == ["d-cid:1"] and "key" not in str(ev.data).lower().replace("keys", "")


def test_an_enclosing_record_grants_its_fields() -> None:
    out, _ = release(grant({"address"}), ALL)
    assert [k["field"] for k in out["keys"]] == ["address.street"]


def test_no_agreement_releases_nothing_and_is_audited_as_denied() -> None:
    out, audit = release(None, ALL)
    assert out["keys"] == [] and out["granted_fields"] == []
    assert audit.records[0].outcome == "denied"


def test_consent_bound_agreements_release_nothing_across_sites() -> None:
    out, _ = release(grant({"citizen_id"}, consent=True), ALL)
    assert out["keys"] == []


def test_a_topic_not_shared_looks_absent() -> None:
    kr = KeyRelease(
        shared=lambda t: False, grants=Grants(None), keys=Keys(), audit=MemoryAuditSink()
    )
    with pytest.raises(NotFound):
        kr.release(client_id="c", department="d", topic=TOPIC, wanted=[])

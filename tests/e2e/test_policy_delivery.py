"""Sharing rules enforced on delivery: share types, narrowing, revocation, expiry, consent."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from exchange.client import ApiError, ExchangeClient
from tests.support.gateway import ThreadGateway
from tests.support.scenario import Scenario, build, grant, new_client, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


def drain(s: Scenario, sub: str, want: int, timeout: float = 15) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        page = s.subscriber.poll(sub, wait_ms=500)
        got += page["records"]
        if page["records"]:
            s.subscriber.commit(sub, page["cursor"])
    return got


def test_unconditional_topic_gives_open_fields_without_agreement(
    gateway: ThreadGateway, admin: ExchangeClient
) -> None:
    s = build(admin, gateway.url, share_type="unconditional")
    s.publisher.publish(s.topic, [{"value": person(1)}])
    sub = s.subscriber.subscribe(s.topic)
    [rec] = drain(s, sub, 1)
    # public + internal only; sensitive and secret are never granted implicitly
    assert rec["value"] == {
        "name": "Resident 1",
        "district": "Xihu",
        "address": {"city": "Hangzhou"},
    }
    s.close()


def test_not_shared_topic_cannot_be_subscribed(
    gateway: ThreadGateway, admin: ExchangeClient
) -> None:
    tag = str(time.time_ns())[-6:]
    s = build(admin, gateway.url, share_type="unconditional")
    admin.call(
        "POST",
        "/v1/topics",
        json={
            "name": f"{s.owner}.sealed-{tag}",
            "owner": s.owner,
            "partitions": 1,
            "value_subject": s.subject,
            "share_type": "not_shared",
            "legal_basis": "State secrets law",
        },
    )
    with pytest.raises(ApiError) as exc:
        s.subscriber.subscribe(f"{s.owner}.sealed-{tag}")
    assert exc.value.status == 403
    s.close()


def test_narrowed_approval_delivers_exactly_the_narrowed_fields(
    gateway: ThreadGateway, admin: ExchangeClient
) -> None:
    s = build(admin, gateway.url)
    grant(s, ["name", "income", "citizen_id", "phone"], narrow=["name", "income"])
    s.publisher.publish(s.topic, [{"value": person(4)}])
    sub = s.subscriber.subscribe(s.topic)
    [rec] = drain(s, sub, 1)
    assert rec["value"] == {"name": "Resident 4", "income": 1004.5}
    s.close()


def test_revocation_stops_sse_and_long_poll_within_two_seconds(
    gateway: ThreadGateway, admin: ExchangeClient
) -> None:
    s = build(admin, gateway.url)
    agreement = grant(s, ["name"])
    sub = s.subscriber.subscribe(s.topic, start="latest")
    events: list[tuple[float, dict[str, Any]]] = []

    def listen() -> None:
        with ExchangeClient(gateway.url, s.subscriber.client_id, s.subscriber._secret) as c:
            for ev in c.stream(sub, timeout=20):
                events.append((time.monotonic(), ev))
                if ev.get("event") == "revoked":
                    return

    poll_result: dict[str, Any] = {}

    def long_poll() -> None:
        with ExchangeClient(gateway.url, s.subscriber.client_id, s.subscriber._secret) as c:
            r = c.request("GET", f"/v1/subscriptions/{sub}/records", params={"wait_ms": 20000})
            poll_result["at"] = time.monotonic()
            poll_result["status"] = r.status_code

    sse = threading.Thread(target=listen)
    sse.start()
    time.sleep(1.5)
    s.publisher.publish(s.topic, [{"value": person(1)}])
    deadline = time.monotonic() + 10
    while not any(e.get("event") == "record" for _, e in events) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert drain(s, sub, 1)  # commit past it, so the long-poll below has to wait
    lp = threading.Thread(target=long_poll)
    lp.start()
    time.sleep(1.0)
    assert "status" not in poll_result  # still waiting
    revoked_at = time.monotonic()
    s.steward.call("POST", f"/v1/agreements/{agreement}/revoke", json={"reason": "ended"})
    sse.join(timeout=10)
    lp.join(timeout=25)
    stop = [t for t, e in events if e.get("event") == "revoked"]
    assert stop and stop[0] - revoked_at <= 2.0
    assert poll_result["status"] == 403
    assert poll_result["at"] - revoked_at <= 2.0 + 0.5  # + one HTTP round trip
    # and nothing flows afterwards
    s.publisher.publish(s.topic, [{"value": person(2)}])
    with pytest.raises(ApiError) as exc:
        s.subscriber.poll(sub, wait_ms=200)
    assert exc.value.status == 403
    s.close()


def test_expired_agreement_delivers_nothing(gateway: ThreadGateway, admin: ExchangeClient) -> None:
    s = build(admin, gateway.url)
    until = datetime.now(UTC) + timedelta(seconds=2)
    ag = s.subscriber.call(
        "POST",
        "/v1/agreements",
        json={
            "topic": s.topic,
            "fields": ["name"],
            "purpose": "short study",
            "legal_basis": "art. 12",
            "valid_from": "2020-01-01T00:00:00Z",
            "valid_until": until.isoformat(),
            "requires_subject_consent": False,
        },
    )
    s.steward.call("POST", f"/v1/agreements/{ag['id']}/approve", json={})
    sub = s.subscriber.subscribe(s.topic)
    s.publisher.publish(s.topic, [{"value": person(1)}])
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 1.1)
    with pytest.raises(ApiError) as exc:
        s.subscriber.poll(sub, wait_ms=200)
    assert exc.value.status == 403
    s.close()


def test_revoked_consent_withholds_only_that_subjects_later_records(
    gateway: ThreadGateway, admin: ExchangeClient
) -> None:
    s = build(admin, gateway.url)
    registrar = new_client(admin, gateway.url, s.owner, ["consent_registrar"])
    grant(s, ["name", "citizen_id"], requires_subject_consent=True)
    alice, bob, carol = person(1), person(2), person(3)  # carol never consented
    consents = {}
    for p in (alice, bob):
        consents[p["citizen_id"]] = registrar.call(
            "POST",
            "/v1/consents",
            json={
                "subject": p["citizen_id"],
                "consumer": s.consumer,
                "topic": s.topic,
                "purpose": "public health follow-up",
                "fields": [],
                "valid_until": "2099-01-01T00:00:00Z",
            },
        )["id"]
    sub = s.subscriber.subscribe(s.topic)
    s.publisher.publish(s.topic, [{"value": p} for p in (alice, bob, carol)])
    first = drain(s, sub, 2)
    assert sorted(r["value"]["name"] for r in first) == ["Resident 1", "Resident 2"]

    registrar.call("POST", f"/v1/consents/{consents[alice['citizen_id']]}/revoke", json={})
    later_alice = {**alice, "district": "Shangcheng"}
    later_bob = {**bob, "district": "Shangcheng"}
    s.publisher.publish(s.topic, [{"value": later_alice}, {"value": later_bob}])
    time.sleep(1.1)  # grant/consent caches are at most one second old
    later = drain(s, sub, 1, timeout=5)
    time.sleep(0.5)
    later += drain(s, sub, 1, timeout=1)
    assert [r["value"]["name"] for r in later] == ["Resident 2"]
    registrar.close()
    s.close()

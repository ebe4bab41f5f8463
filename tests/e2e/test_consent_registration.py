"""Who registers a data subject's consent, over HTTP (issue 12 item 4): the owner's registrars
or a consent manager an admin designated — never the consumer unlocking its own reads. Each
refusal is 403, audited as ``consent.denied`` and leaves no consent behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from exchange.client import ExchangeClient
from tests.e2e.test_audit_review import events
from tests.support.gateway import ThreadGateway
from tests.support.scenario import Scenario, build, grant, new_client, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]
UNTIL = (datetime.now(UTC) + timedelta(days=30)).isoformat()
BASE = uuid.uuid4().int % 10**9  # subjects of their own on the shared session gateway


def citizen(i: int) -> str:
    return str(person(BASE + i)["citizen_id"])


@pytest.fixture(scope="module")
def s(gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[Scenario]:
    scenario = build(admin, gateway.url)
    grant(scenario, ["name", "citizen_id"], requires_subject_consent=True)
    yield scenario
    scenario.close()


def body(s: Scenario, i: int, consumer: str | None = None) -> dict[str, Any]:
    return {
        "subject": citizen(i),
        "consumer": consumer or s.consumer,
        "topic": s.topic,
        "purpose": "public health follow-up",
        "valid_until": UNTIL,
    }


def consents_of(admin: ExchangeClient, i: int) -> list[Any]:
    found: list[Any] = admin.call("POST", "/v1/consents/lookup", json={"subject": citizen(i)})
    return found


def test_the_consumer_cannot_unlock_records_for_itself(
    s: Scenario, gateway: ThreadGateway, admin: ExchangeClient, security_officer: ExchangeClient
) -> None:
    own = new_client(admin, gateway.url, s.consumer, ["consent_registrar"])
    r = own.request("POST", "/v1/consents", json=body(s, 1))
    assert r.status_code == 403, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert consents_of(admin, 1) == []
    denied = events(security_officer, type="consent.denied", client=own.client_id)
    assert [e["outcome"] for e in denied] == ["denied"]
    # searchable by the subject, like every consent event
    by_subject = events(security_officer, type="consent.denied", subject=citizen(1))
    assert [e["actor"] for e in by_subject] == [own.client_id]
    own.close()


def test_owner_registrars_and_designated_managers_may(
    s: Scenario, gateway: ThreadGateway, admin: ExchangeClient, security_officer: ExchangeClient
) -> None:
    owner_reg = new_client(admin, gateway.url, s.owner, ["consent_registrar"])
    c = owner_reg.call("POST", "/v1/consents", json=body(s, 2))
    assert c["registrar_department"] == s.owner

    portal = f"portal-{uuid.uuid4().hex[:6]}"
    admin.call("POST", "/v1/departments", json={"id": portal, "name": "Portal", "level": "city"})
    portal_reg = new_client(admin, gateway.url, portal, ["consent_registrar"])
    assert portal_reg.request("POST", "/v1/consents", json=body(s, 3)).status_code == 403
    # only an admin designates; a steward's attempt is refused and changes nothing
    r = s.steward.request("PUT", f"/v1/consents/managers/{s.owner}/{portal}")
    assert r.status_code == 403
    assert admin.call("GET", f"/v1/consents/managers/{s.owner}") == []
    made = admin.call("PUT", f"/v1/consents/managers/{s.owner}/{portal}")
    assert made["owner"] == s.owner and made["manager"] == portal
    assert (
        portal_reg.call("POST", "/v1/consents", json=body(s, 3))["registrar_department"] == portal
    )
    # but a manager never registers for its own access
    r = portal_reg.request("POST", "/v1/consents", json=body(s, 4, consumer=portal))
    assert r.status_code == 403
    assert consents_of(admin, 4) == []
    # withdrawn: refused again
    r = admin.request("DELETE", f"/v1/consents/managers/{s.owner}/{portal}")
    assert r.status_code == 204
    assert portal_reg.request("POST", "/v1/consents", json=body(s, 5)).status_code == 403
    assert consents_of(admin, 5) == []
    kinds = {e["type"] for e in events(security_officer, client=admin.client_id)}
    assert {"consent.manager_designated", "consent.manager_withdrawn"} <= kinds
    owner_reg.close()
    portal_reg.close()

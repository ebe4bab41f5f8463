"""Catalog, agreement and consent APIs over HTTP: shapes, roles, "forbidden looks like absent"."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from consent.catalog import CatalogEntry
from consent.signing import verify_artefact
from exchange.client import ApiError, ExchangeClient
from tests.support.gateway import ThreadGateway
from tests.support.scenario import Scenario, build, new_client, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]
SOON = (datetime.now(UTC) + timedelta(days=60)).isoformat()


@pytest.fixture(scope="module")
def s(gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[Scenario]:
    scenario = build(admin, gateway.url)
    yield scenario
    scenario.close()


@pytest.fixture(scope="module")
def outsiders(
    gateway: ThreadGateway, admin: ExchangeClient, security_officer: ExchangeClient
) -> Iterator[dict[str, ExchangeClient]]:
    dept = f"tax-{uuid.uuid4().hex[:6]}"
    admin.call("POST", "/v1/departments", json={"id": dept, "name": "Tax", "level": "city"})
    clients = {
        "steward": new_client(admin, gateway.url, dept, ["steward"]),
        "subscriber": new_client(admin, gateway.url, dept, ["subscriber"]),
        "auditor": new_client(security_officer, gateway.url, dept, ["auditor"]),
        "registrar": new_client(admin, gateway.url, dept, ["consent_registrar"]),
    }
    yield clients
    for c in clients.values():
        c.close()


def ask(s: Scenario, **over: Any) -> dict[str, Any]:
    body = {
        "topic": s.topic,
        "fields": ["name", "income"],
        "purpose": "benefit eligibility",
        "legal_basis": "Social Assistance Measures, art. 9",
        "valid_until": SOON,
        "requires_subject_consent": False,
        **over,
    }
    result: dict[str, Any] = s.subscriber.call("POST", "/v1/agreements", json=body)
    return result


def status_of(call: Any) -> int:
    with pytest.raises(ApiError) as err:
        call()
    return err.value.status


def test_catalog_search_enriched_with_classification(s: Scenario, admin: ExchangeClient) -> None:
    found = admin.call("GET", "/v1/catalog", params={"q": "residents", "dept": s.owner})
    assert [e["topic"] for e in found] == [s.topic]
    entry = found[0]
    assert entry["share_type"] == "conditional" and entry["owner"] == s.owner
    classes = {f["path"]: f["classification"] for f in entry["fields"]}
    assert classes["income"] == "secret" and classes["name"] == "public"
    assert [f["path"] for f in entry["fields"] if f["data_subject"]] == ["citizen_id"]
    assert (
        admin.call("GET", "/v1/catalog", params={"dept": s.owner, "share_type": "not_shared"}) == []
    )
    assert s.subscriber.call("GET", f"/v1/catalog/{s.topic}")["title"] == "Registered residents"


def test_catalog_as_asyncapi(s: Scenario) -> None:
    doc = s.subscriber.call("GET", "/v1/catalog/asyncapi")
    assert doc["asyncapi"] == "3.0.0"
    channel = doc["channels"][s.topic]
    assert channel["x-exchange"]["owner"] == s.owner
    msg_ref = channel["messages"]
    (ref,) = [m["$ref"] for m in msg_ref.values()]
    message = doc["components"]["messages"][ref.rsplit("/", 1)[1]]
    assert message["payload"]["schema"]["name"] == "Resident"


def test_catalog_needs_a_token(gateway: ThreadGateway) -> None:
    assert httpx.get(f"{gateway.url}/v1/catalog").status_code == 401


def test_request_shape_and_who_may_decide(
    s: Scenario, outsiders: dict[str, ExchangeClient], admin: ExchangeClient
) -> None:
    ag = ask(s)
    assert ag["status"] == "pending" and ag["id"].startswith("agr-")
    assert ag["consumer"] == s.consumer and ag["owner"] == s.owner
    assert ag["overdue"] is False and ag["respond_by"] > ag["requested_at"]
    path = f"/v1/agreements/{ag['id']}"
    # another department's steward: indistinguishable from a missing agreement
    assert status_of(lambda: outsiders["steward"].call("POST", f"{path}/approve")) == 404
    assert (
        status_of(lambda: outsiders["steward"].call("POST", "/v1/agreements/agr-0/approve")) == 404
    )
    assert status_of(lambda: outsiders["subscriber"].call("GET", path)) == 404
    # auditors and admins read, never grant; the requester cannot approve itself
    assert outsiders["auditor"].call("GET", path)["id"] == ag["id"]
    assert status_of(lambda: outsiders["auditor"].call("POST", f"{path}/approve")) == 403
    assert status_of(lambda: admin.call("POST", f"{path}/approve")) == 403
    assert status_of(lambda: s.subscriber.call("POST", f"{path}/approve")) == 403
    # the owner's steward narrows; widening is refused
    assert (
        status_of(lambda: s.steward.call("POST", f"{path}/approve", json={"fields": ["phone"]}))
        == 422
    )
    done = s.steward.call("POST", f"{path}/approve", json={"fields": ["name"]})
    assert done["status"] == "approved" and done["granted_fields"] == ["name"]
    assert done["decided_by"] == s.steward.client_id
    for step, want in (("suspend", "suspended"), ("resume", "approved"), ("revoke", "revoked")):
        assert s.steward.call("POST", f"{path}/{step}")["status"] == want
    assert status_of(lambda: s.steward.call("POST", f"{path}/resume")) == 409
    listed = s.subscriber.call("GET", "/v1/agreements", params={"topic": s.topic})
    assert ag["id"] in [a["id"] for a in listed]
    assert outsiders["subscriber"].call("GET", "/v1/agreements", params={"topic": s.topic}) == []


def test_reject_with_reason_and_overdue_listing(s: Scenario, admin: ExchangeClient) -> None:
    ag = ask(s, fields=["district"])
    path = f"/v1/agreements/{ag['id']}"
    assert status_of(lambda: s.steward.call("POST", f"{path}/reject", json={})) == 422
    body = s.steward.call("POST", f"{path}/reject", json={"reason": "purpose too broad"})
    assert body["status"] == "rejected" and body["reason"] == "purpose too broad"
    overdue = admin.call("GET", "/v1/agreements", params={"overdue": "true"})
    assert ag["id"] not in [a["id"] for a in overdue]  # fresh requests are not overdue
    assert all(a["overdue"] for a in overdue)


def test_request_validation(s: Scenario, admin: ExchangeClient, gateway: ThreadGateway) -> None:
    assert status_of(lambda: ask(s, fields=["nope"])) == 422
    assert status_of(lambda: ask(s, valid_until="2001-01-01T00:00:00Z")) == 422
    assert status_of(lambda: ask(s, topic="nobody.nothing")) == 404
    # only subscribers ask
    assert status_of(lambda: s.steward.call("POST", "/v1/agreements", json={})) in (403, 422)
    topic = f"{s.owner}.sealed-{uuid.uuid4().hex[:6]}"
    gateway.services.catalog.create(
        CatalogEntry(
            topic=topic,
            owner=s.owner,
            title="Adoption records",
            description="",
            update_cycle="daily",
            share_type="not_shared",
            value_subject=s.subject,
            partitions=1,
            cipher="SM4_GCM",
            legal_basis="Adoption Law, art. 32 (confidentiality)",
            created_at=datetime.now(UTC),
        )
    )
    with pytest.raises(ApiError) as err:
        ask(s, topic=topic, fields=["name"])
    assert err.value.status == 403 and err.value.body["code"] == "topic_not_shared"


def test_consent_record_verify_revoke(
    s: Scenario,
    gateway: ThreadGateway,
    admin: ExchangeClient,
    outsiders: dict[str, ExchangeClient],
) -> None:
    registrar = outsiders["registrar"]
    # tax records consents for the owner only once an admin designates it consent manager
    tax = registrar.client_id.rsplit("-", 1)[0]  # client ids are "<dept>-<hex>"
    body = {
        "subject": person(8)["citizen_id"],
        "consumer": s.consumer,
        "topic": s.topic,
        "purpose": "benefit eligibility",
        "valid_until": SOON,
    }
    assert status_of(lambda: registrar.call("POST", "/v1/consents", json=body)) == 403
    admin.call("PUT", f"/v1/consents/managers/{s.owner}/{tax}")
    citizen = person(7)["citizen_id"]
    body = {
        "subject": citizen,
        "consumer": s.consumer,
        "topic": s.topic,
        "purpose": "benefit eligibility",
        "fields": ["name"],
        "valid_until": SOON,
    }
    assert status_of(lambda: s.subscriber.call("POST", "/v1/consents", json=body)) == 403
    c = registrar.call("POST", "/v1/consents", json=body)
    assert c["status"] == "ACTIVE" and c["version"] == 1 and "subject" not in c
    jwks = httpx.get(f"{gateway.url}/v1/consents/jwks").json()  # public, no token
    claims = verify_artefact(c["artefact"], jwks)
    assert claims["consumer"] == s.consumer and claims["fields"] == ["name"]
    assert "sub_salt" not in claims and claims["ver"] == 2  # keyed: see test_consent_rules
    # the consumer department can fetch the artefact as proof; others cannot see it
    assert s.subscriber.call("GET", f"/v1/consents/{c['id']}")["artefact"] == c["artefact"]
    assert status_of(lambda: s.steward.call("POST", f"/v1/consents/{c['id']}/revoke")) == 403
    revoked = registrar.call("POST", f"/v1/consents/{c['id']}/revoke")
    assert revoked["status"] == "REVOKED" and revoked["version"] == 2
    versions = registrar.call("GET", f"/v1/consents/{c['id']}/versions")
    assert [v["status"] for v in versions] == ["ACTIVE", "REVOKED"]
    assert versions[0]["artefact"] == c["artefact"]  # earlier versions never change
    found = registrar.call("POST", "/v1/consents/lookup", json={"subject": citizen})
    assert [x["id"] for x in found] == [c["id"]]
    assert status_of(lambda: registrar.call("POST", f"/v1/consents/{c['id']}/resume")) == 409

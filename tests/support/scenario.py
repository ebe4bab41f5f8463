"""A realistic two-department scenario built over HTTP, shared by e2e tests."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from exchange.client import ExchangeClient

PERSON_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Resident",
    "namespace": "gov.civil",
    "fields": [
        {
            "name": "citizen_id",
            "type": "string",
            "classification": "sensitive",
            "data_subject": True,
        },
        {"name": "name", "type": "string", "classification": "public"},
        {"name": "district", "type": "string"},
        {"name": "income", "type": "double", "classification": "secret"},
        {
            "name": "phone",
            "type": ["null", "string"],
            "default": None,
            "classification": "sensitive",
        },
        {
            "name": "address",
            "type": {
                "type": "record",
                "name": "Address",
                "fields": [
                    {"name": "street", "type": "string", "classification": "sensitive"},
                    {"name": "city", "type": "string", "classification": "public"},
                ],
            },
        },
    ],
}


def person(i: int) -> dict[str, Any]:
    return {
        "citizen_id": f"3301{i:014d}",
        "name": f"Resident {i}",
        "district": "Xihu",
        "income": 1000.5 + i,
        "phone": f"+86-138-{i:08d}",
        "address": {"street": f"{i} Wensan Road", "city": "Hangzhou"},
    }


@dataclass
class Scenario:
    owner: str
    consumer: str
    topic: str
    subject: str
    publisher: ExchangeClient
    steward: ExchangeClient
    subscriber: ExchangeClient

    def close(self) -> None:
        for c in (self.publisher, self.steward, self.subscriber):
            c.close()


def new_client(admin: ExchangeClient, url: str, dept: str, roles: list[str]) -> ExchangeClient:
    body = admin.call(
        "POST", f"/v1/departments/{dept}/clients", json={"name": f"{dept} app", "roles": roles}
    )
    return ExchangeClient(url, body["client_id"], body["client_secret"])


def build(
    admin: ExchangeClient,
    url: str,
    *,
    share_type: str = "conditional",
    schema: dict[str, Any] | None = None,
    partitions: int = 2,
) -> Scenario:
    tag = uuid.uuid4().hex[:6]
    owner, consumer = f"civil-{tag}", f"health-{tag}"
    admin.call(
        "POST", "/v1/departments", json={"id": owner, "name": "Civil Affairs", "level": "city"}
    )
    admin.call("POST", "/v1/departments", json={"id": consumer, "name": "Health", "level": "city"})
    publisher = new_client(admin, url, owner, ["publisher", "registry:write", "registry:read"])
    steward = new_client(admin, url, owner, ["steward"])
    subscriber = new_client(admin, url, consumer, ["subscriber", "registry:read"])
    topic = f"{owner}.residents"
    subject = f"{topic}-value"
    r = publisher.request(
        "POST",
        f"/registry/subjects/{subject}/versions",
        json={"schema": json.dumps(schema or PERSON_SCHEMA)},
    )
    assert r.status_code == 200, r.text
    admin.call(
        "POST",
        "/v1/topics",
        json={
            "name": topic,
            "owner": owner,
            "partitions": partitions,
            "value_subject": subject,
            "share_type": share_type,
            "title": "Registered residents",
        },
    )
    return Scenario(owner, consumer, topic, subject, publisher, steward, subscriber)


def grant(
    s: Scenario,
    fields: list[str],
    *,
    narrow: list[str] | None = None,
    requires_subject_consent: bool = False,
) -> str:
    ag = s.subscriber.call(
        "POST",
        "/v1/agreements",
        json={
            "topic": s.topic,
            "fields": fields,
            "purpose": "public health follow-up",
            "legal_basis": "Regulation on government data sharing, art. 12",
            "valid_from": "2020-01-01T00:00:00Z",
            "valid_until": "2099-01-01T00:00:00Z",
            "requires_subject_consent": requires_subject_consent,
        },
    )
    assert ag["status"] == "pending"
    body = {"fields": narrow} if narrow is not None else {}
    s.steward.call("POST", f"/v1/agreements/{ag['id']}/approve", json=body)
    return str(ag["id"])


def pull(
    client: ExchangeClient, sub: str, want: int, *, commit: bool = True, timeout: float = 20
) -> list[dict[str, Any]]:
    """Pull (and commit) pages until ``want`` records came or ``timeout`` passed: a page holds
    what has arrived, maybe one partition's records so far."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        page = client.poll(sub, wait_ms=1000)
        got += page["records"]
        if commit and page["records"]:
            client.commit(sub, page["cursor"])
    return got

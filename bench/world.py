"""The bench's data: a 10-field record with 3 sensitive fields, and the departments,
clients, topics and agreements around it, built over HTTP like a real deployment would."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from exchange.client import ExchangeClient

SENSITIVE = ("name", "ssn", "income")


def schema(*, sensitive: bool = True) -> dict[str, Any]:
    """``sensitive=False``: the same shape, every field public (for unconditional topics)."""

    def cls(name: str) -> str:
        return "sensitive" if sensitive and name in SENSITIVE else "public"

    types = [
        ("id", "string"),
        ("name", "string"),
        ("ssn", "string"),
        ("income", "long"),
        ("district", "string"),
        ("age", "int"),
        ("amount", "double"),
        ("approved", "boolean"),
        ("program", "string"),
        ("sent_us", "long"),  # send time, microseconds since the epoch: latency probe
    ]
    return {
        "type": "record",
        "name": "Benefit",
        "namespace": "gov.bench",
        "fields": [{"name": n, "type": t, "classification": cls(n)} for n, t in types],
    }


FIELDS = [f["name"] for f in schema()["fields"]]


def record(i: int, sent_us: int = 0) -> dict[str, Any]:
    return {
        "id": f"b-{i}",
        "name": f"Li Na {i}",
        "ssn": f"11010119900307{i % 10_000:04d}",
        "income": 120_000 + i,
        "district": "North",
        "age": 40 + i % 40,
        "amount": 1234.5 + i,
        "approved": i % 2 == 0,
        "program": "housing",
        "sent_us": sent_us,
    }


def now_us() -> int:
    return time.time_ns() // 1000


def publish_body(records: list[dict[str, Any]]) -> bytes:
    """The JSON publish body, encoded once up front so clients spend no time on it."""
    return json.dumps({"records": [{"key": r["id"], "value": r} for r in records]}).encode()


@dataclass
class Tenant:
    """A publishing department with one topic, and a subscribing department."""

    topic: str
    partitions: int
    publisher: ExchangeClient
    subscriber: ExchangeClient

    def close(self) -> None:
        self.publisher.close()
        self.subscriber.close()


def _client(admin: ExchangeClient, url: str, dept: str, roles: list[str]) -> ExchangeClient:
    body = admin.call(
        "POST", f"/v1/departments/{dept}/clients", json={"name": f"{dept} bench", "roles": roles}
    )
    return ExchangeClient(url, body["client_id"], body["client_secret"], timeout=60)


def tenant(
    admin: ExchangeClient, url: str, *, sensitive: bool = True, partitions: int = 3
) -> Tenant:
    """Owner + consumer departments, a topic and (for sensitive data) an approved agreement
    granting every field, so delivery opens all three sealed fields."""
    tag = uuid.uuid4().hex[:6]
    owner, consumer = f"bench-{tag}", f"reader-{tag}"
    for dept in (owner, consumer):
        admin.call("POST", "/v1/departments", json={"id": dept, "name": dept, "level": "city"})
    publisher = _client(admin, url, owner, ["publisher", "registry:write", "registry:read"])
    subscriber = _client(admin, url, consumer, ["subscriber", "registry:read"])
    topic, subject = f"{owner}.benefits", f"{owner}.benefits-value"
    publisher.call(
        "POST",
        f"/registry/subjects/{subject}/versions",
        json={"schema": json.dumps(schema(sensitive=sensitive))},
    )
    admin.call(
        "POST",
        "/v1/topics",
        json={
            "name": topic,
            "owner": owner,
            "partitions": partitions,
            "value_subject": subject,
            "share_type": "conditional" if sensitive else "unconditional",
        },
    )
    if sensitive:
        steward = _client(admin, url, owner, ["steward"])
        agreement = subscriber.call(
            "POST",
            "/v1/agreements",
            json={
                "topic": topic,
                "fields": FIELDS,
                "purpose": "benchmark",
                "legal_basis": "benchmark",
                "valid_from": "2020-01-01T00:00:00Z",
                "valid_until": "2099-01-01T00:00:00Z",
            },
        )
        steward.call("POST", f"/v1/agreements/{agreement['id']}/approve", json={})
        steward.close()
    return Tenant(topic, partitions, publisher, subscriber)

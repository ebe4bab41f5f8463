"""Property (issue 12.1): for random schemas with classified fields at random depths and in
random containers (record, array, map, optional record, union of two records, reuse of a
named type, recursion, a classified container), random records published through the
gateway by both paths never put a sensitive value into the broker's segment files, and a
department without an agreement receives none of them.

Bounded and reproducible: a fixed number of examples, ``derandomize=True``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings

from exchange.client import ExchangeClient
from tests.support.avro_publish import publish_avro
from tests.support.gateway import ThreadGateway
from tests.support.random_schemas import Values, cases, with_defaults
from tests.support.scenario import Scenario, build

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@pytest.fixture(scope="module")
def base(gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[Scenario]:
    s = build(admin, gateway.url, share_type="unconditional", partitions=1)
    yield s
    s.close()


def _topic(admin: ExchangeClient, s: Scenario, schema: dict[str, Any]) -> tuple[str, str]:
    topic = f"{s.owner}.p{uuid.uuid4().hex[:8]}"
    subject = f"{topic}-value"
    r = s.publisher.request(
        "POST", f"/registry/subjects/{subject}/versions", json={"schema": json.dumps(schema)}
    )
    assert r.status_code == 200, r.text  # every generated shape can be sealed
    body = {
        "name": topic,
        "owner": s.owner,
        "partitions": 1,
        "value_subject": subject,
        "share_type": "unconditional",
        "title": "property",
    }
    admin.call("POST", "/v1/topics", json=body)
    return topic, subject


def _delivered(client: ExchangeClient, topic: str, want: int) -> str:
    sub = client.subscribe(topic)
    got: list[Any] = []
    deadline = time.monotonic() + 20
    while len(got) < want and time.monotonic() < deadline:
        page = client.poll(sub, wait_ms=500)
        got += page["records"]
        client.commit(sub, page["cursor"])
    assert len(got) == want
    return json.dumps(got)


@settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_no_sensitive_value_reaches_the_segments_or_an_unagreed_consumer(
    case: tuple[dict[str, Any], list[Any], Values],
    base: Scenario,
    admin: ExchangeClient,
    kafka_log_dir: Path,
) -> None:
    schema, records, values = case
    note(json.dumps(schema))
    note(json.dumps(records))
    topic, subject = _topic(admin, base, schema)
    half = len(records) // 2
    base.publisher.publish(
        topic, [{"key": f"j{i}", "value": r} for i, r in enumerate(records[:half])]
    )
    publish_avro(
        base.publisher,
        topic,
        subject,
        schema,
        [(f"w{i}", with_defaults(r, schema, values.named)) for i, r in enumerate(records[half:])],
    )
    disk = b"".join(p.read_bytes() for p in kafka_log_dir.glob(f"{topic}-*/*.log"))
    root_keys = [r[f"k_{schema['name']}"] for r in records]
    assert all(k.encode() in disk for k in root_keys)  # the scan sees what is not sealed
    assert [x for x in values.secrets if x.encode() in disk] == []

    delivered = _delivered(base.subscriber, topic, len(records))  # no agreement: open fields
    assert all(k in delivered for k in root_keys)
    assert [x for x in values.secrets if x in delivered] == []

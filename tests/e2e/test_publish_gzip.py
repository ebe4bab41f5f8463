"""Publishing with ``Content-Encoding: gzip`` (county nodes send compressed batches): accepted,
bounded after decompression (a zip bomb is a 413 and writes nothing), malformed gzip a 400."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from exchange.client import ExchangeClient
from tests.support.gateway import ThreadGateway
from tests.support.scenario import Scenario, build, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@pytest.fixture(scope="module")
def s(gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[Scenario]:
    scenario = build(admin, gateway.url)
    yield scenario
    scenario.close()


def ends(gw: ThreadGateway, topic: str) -> dict[int, int]:
    return dict(gw.services.readers.end_offsets(topic))


def post(s: Scenario, body: bytes, encoding: str, key: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    if key:
        headers["Idempotency-Key"] = key
    return s.publisher.request(
        "POST", f"/v1/topics/{s.topic}/records", content=body, headers=headers
    )


def batch(n: int) -> bytes:
    records = [{"key": f"k{i}", "value": person(i)} for i in range(n)]
    return json.dumps({"records": records}).encode()


def test_gzip_batch_is_published_and_a_plain_retry_replays_it(
    s: Scenario, gateway: ThreadGateway
) -> None:
    body = batch(3)
    key = uuid.uuid4().hex
    before = sum(ends(gateway, s.topic).values())
    first = post(s, gzip.compress(body, mtime=0), "gzip", key)
    assert first.status_code == 200, first.text
    assert len(first.json()["offsets"]) == 3
    # the idempotency digest is over the decoded body: the same request uncompressed replays
    again = post(s, body, "identity", key)
    assert again.status_code == 200, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    deadline = time.monotonic() + 30  # end offsets are read through a cache: wait for them
    while sum(ends(gateway, s.topic).values()) - before < 3:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    third = post(s, gzip.compress(body, mtime=0), "gzip", key)
    assert third.headers.get("Idempotent-Replayed") == "true"
    assert third.json() == first.json()


def test_zip_bomb_is_413_and_writes_nothing(s: Scenario, gateway: ThreadGateway) -> None:
    limit = gateway.settings.max_body_bytes
    # ~16 kB on the wire that would inflate past the limit (spaces are valid JSON padding)
    bomb = gzip.compress(b'{"records":[' + b" " * (limit + 1024) + b"]}", compresslevel=9)
    assert len(bomb) < limit // 100
    before = ends(gateway, s.topic)
    r = post(s, bomb, "gzip")
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "payload_too_large"
    assert "decompressed" in r.json()["detail"]
    assert ends(gateway, s.topic) == before


@pytest.mark.parametrize(
    ("body", "encoding", "status", "code"),
    [
        (b"not gzip at all", "gzip", 400, "invalid_encoding"),
        (gzip.compress(batch(1))[:-12], "gzip", 400, "invalid_encoding"),  # truncated
        (gzip.compress(batch(1)) + b"junk", "gzip", 400, "invalid_encoding"),
        (batch(1), "br", 415, "unsupported_encoding"),
    ],
)
def test_bad_encodings_are_refused(
    s: Scenario, gateway: ThreadGateway, body: bytes, encoding: str, status: int, code: str
) -> None:
    before = ends(gateway, s.topic)
    r = post(s, body, encoding)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert ends(gateway, s.topic) == before

"""The publish fast path (gateway/publish_fast.py) answers exactly as the FastAPI route does.

Two apps over the same running services (real broker, database, audit log): one with the fast
path, one without (``publish_fast_path=False``). Each request goes to both, and the answers
(status, problem JSON, the headers that carry meaning) and the audit events each one wrote
are compared: the success case and every refusal, in the order the route checks them.
"""

from __future__ import annotations

import gzip
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from starlette.testclient import TestClient

from exchange.auditing import AuditRecord, AuditSink
from exchange.client import ExchangeClient
from exchange.identity.tokens import TokenService
from gateway import publish_fast
from gateway.app import create_app
from gateway.container import FederationServices, Services
from gateway.publish_fast import PublishFastPath
from gateway.ratelimit import RateLimiter
from tests.support.avro_publish import AVRO, frames
from tests.support.gateway import ThreadGateway
from tests.support.scenario import PERSON_SCHEMA, Scenario, build, new_client, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

ROUTE = "/v1/topics/{topic}/records"


class Recording:
    """The running audit log, keeping what each request appended."""

    def __init__(self, inner: AuditSink) -> None:
        self.inner, self.seen = inner, cast(list[AuditRecord], [])

    def append(self, record: AuditRecord) -> None:
        self.seen.append(record)
        self.inner.append(record)

    def append_many(self, records: Sequence[AuditRecord]) -> None:
        self.seen.extend(records)
        self.inner.append_many(records)


@dataclass
class Pair:
    fast: TestClient
    slow: TestClient
    audit: Recording
    served: list[str]  # topics the fast path served


@pytest.fixture(scope="module")
def s(gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[Scenario]:
    scenario = build(admin, gateway.url)
    yield scenario
    scenario.close()


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    serve = PublishFastPath._serve

    async def spy(self: PublishFastPath, request: Any, topic: str) -> Any:
        seen.append(topic)
        return await serve(self, request, topic)

    monkeypatch.setattr(PublishFastPath, "_serve", spy)
    return seen


def pair(
    svc: Services,
    served: list[str],
    *,
    limiter: Callable[[], RateLimiter] | None = None,
    **cfg: Any,
) -> Pair:
    audit = Recording(svc.audit)

    def client(fast: bool) -> TestClient:
        settings = svc.settings.model_copy(update={"publish_fast_path": fast, **cfg})
        limits = limiter() if limiter else RateLimiter(10_000, 10_000)
        app = create_app(replace(svc, settings=settings, audit=audit, rate_limiter=limits))
        return TestClient(app, raise_server_exceptions=False)

    return Pair(client(True), client(False), audit, served)


@pytest.fixture
def p(gateway: ThreadGateway, served: list[str]) -> Pair:
    return pair(gateway.services, served)


def events(records: list[AuditRecord]) -> list[tuple[Any, ...]]:
    """What an event says, less the positions (each app's publish gets its own offsets)."""
    out = []
    for r in records:
        data = {k: v for k, v in r.data.items() if k != "offsets"}
        out.append((r.type, r.actor, r.department, r.topic, r.outcome, data, r.subjects))
    return out


def answer(r: httpx.Response) -> tuple[Any, ...]:
    body = r.json() if r.content else None
    if isinstance(body, dict) and isinstance(body.get("offsets"), list):
        body = {**body, "offsets": [sorted(o) for o in body["offsets"]]}
    headers = ("content-type", "www-authenticate", "retry-after", "idempotent-replayed")
    return r.status_code, body, [r.headers.get(h) for h in headers]


def both(
    p: Pair, path: str, *, fast_path: bool = True, method: str = "POST", **kw: Any
) -> httpx.Response:
    """The request to both apps: the same answer and the same audit events; the fast app's
    answer is returned."""
    served = len(p.served)
    mark = len(p.audit.seen)
    fast = p.fast.request(method, path, **kw)
    wrote = p.audit.seen[mark:]
    assert len(p.served) == served + fast_path  # served by the fast path, or passed on
    mark = len(p.audit.seen)
    slow = p.slow.request(method, path, **kw)
    assert answer(fast) == answer(slow), (fast.text, slow.text)
    assert events(wrote) == events(p.audit.seen[mark:])
    assert fast.headers.get("x-request-id") and slow.headers.get("x-request-id")
    return fast


def auth(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers}


def body(*records: Any) -> bytes:
    listed = [{"key": f"k{i}", "value": v} for i, v in enumerate(records)]
    return json.dumps({"records": listed}).encode()


def path(topic: str) -> str:
    return f"/v1/topics/{topic}/records"


def test_a_publish_answers_alike_and_is_audited_alike(s: Scenario, p: Pair) -> None:
    r = both(
        p, path(s.topic), content=body(person(1), person(2)), headers=auth(s.publisher.token())
    )
    assert r.status_code == 200 and len(r.json()["offsets"]) == 2
    assert r.headers["content-length"] == str(len(r.content))


def test_token_refusals_answer_alike(s: Scenario, p: Pair, gateway: ThreadGateway) -> None:
    svc, good = gateway.services, body(person(1))
    assert both(p, path(s.topic), content=good).status_code == 401  # no token
    assert both(p, path(s.topic), content=good, headers=auth("not.a.token")).status_code == 401
    client = svc.identity.get_client(s.publisher.client_id)
    other = TokenService(
        svc.sessions, svc.master_key, issuer=svc.settings.gateway_url, audience="someone-else"
    )
    elsewhere = other.issue(client, None).access_token  # our key, another audience
    assert both(p, path(s.topic), content=good, headers=auth(elsewhere)).status_code == 401
    revoked = svc.tokens.issue(client, None).access_token
    svc.tokens.revoke(revoked)
    assert both(p, path(s.topic), content=good, headers=auth(revoked)).status_code == 401
    assert {e.type for e in p.audit.seen} == {"auth.denied"}


def test_refusals_by_role_topic_and_owner_answer_alike(
    s: Scenario, p: Pair, gateway: ThreadGateway, admin: ExchangeClient
) -> None:
    good = body(person(1))
    steward = auth(s.steward.token())  # the owner's department, without the publisher role
    assert both(p, path(s.topic), content=good, headers=steward).status_code == 403
    mine = auth(s.publisher.token())
    assert both(p, path(f"{s.owner}.nothing"), content=good, headers=mine).status_code == 403
    with new_client(admin, gateway.url, s.consumer, ["publisher"]) as stranger:
        theirs = auth(stranger.token())
        assert both(p, path(s.topic), content=good, headers=theirs).status_code == 403
    assert {e.type for e in p.audit.seen} == {"access.denied"}


def test_a_mirrored_topic_is_refused_alike(
    s: Scenario, gateway: ThreadGateway, served: list[str]
) -> None:
    # Only the owner lookup of the federation services takes part in a publish refusal.
    sites = SimpleNamespace(owner_of=lambda topic: "site-b" if topic.endswith(".mirror") else None)
    fed = cast(FederationServices, SimpleNamespace(sites=sites))
    m = pair(replace(gateway.services, federation=fed), served)
    r = both(
        m, path(f"{s.owner}.mirror"), content=body(person(1)), headers=auth(s.publisher.token())
    )
    assert r.status_code == 409 and r.json()["code"] == "mirrored_read_only"


def test_bad_bodies_answer_alike(s: Scenario, p: Pair) -> None:
    h = auth(s.publisher.token())
    for bad in (b"{", b"[]", b'{"records": []}', b'{"records": [{"key": 1}]}', b"1e999"):
        assert both(p, path(s.topic), content=bad, headers=h).status_code == 422
    invalid = {**person(2), "income": "lots"}
    r = both(p, path(s.topic), content=body(person(1), invalid, 7), headers=h)
    assert [(e["index"], e["path"]) for e in r.json()["errors"]][:2] == [(1, "income"), (2, "")]
    deep = b'{"records": [{"value": ' + b"[" * 70 + b"]" * 70 + b"}]}"
    assert both(p, path(s.topic), content=deep, headers=h).json()["code"] == "json_too_deep"
    assert p.audit.seen == []


def test_limits_and_encodings_answer_alike(
    s: Scenario, gateway: ThreadGateway, served: list[str]
) -> None:
    small = pair(gateway.services, served, max_body_bytes=4096, max_batch_records=3)
    h, plain = auth(s.publisher.token()), body(person(1))
    big = b" " * 5000 + plain
    # declared too large: refused by the request limits before either route
    assert both(small, path(s.topic), content=big, headers=h, fast_path=False).status_code == 413
    streamed = both(small, path(s.topic), content=[big[:3000], big[3000:]], headers=h)
    assert streamed.status_code == 413
    bomb = gzip.compress(b" " * 10_000 + plain)
    zipped = auth(s.publisher.token(), **{"Content-Encoding": "gzip"})
    assert both(small, path(s.topic), content=bomb, headers=zipped).status_code == 413
    assert both(small, path(s.topic), content=b"nope", headers=zipped).status_code == 400
    brotli = auth(s.publisher.token(), **{"Content-Encoding": "br"})
    assert both(small, path(s.topic), content=plain, headers=brotli).status_code == 415
    four = body(*(person(i) for i in range(4)))
    r = both(small, path(s.topic), content=four, headers=h)
    assert r.status_code == 413 and r.json()["code"] == "batch_too_large"
    assert both(small, path(s.topic), content=gzip.compress(plain), headers=zipped).is_success


def test_a_large_body_is_read_only_once_the_caller_is_authorised(s: Scenario, p: Pair) -> None:
    assert publish_fast.PREFETCH < 100_000
    large = body(*(person(i) for i in range(600)))
    assert len(large) > publish_fast.PREFETCH
    assert both(p, path(s.topic), content=large, headers=auth("not.a.token")).status_code == 401
    r = both(p, path(s.topic), content=large, headers=auth(s.publisher.token()))
    assert len(r.json()["offsets"]) == 600
    expect = auth(s.publisher.token(), Expect="100-continue")
    assert both(p, path(s.topic), content=body(person(1)), headers=expect).is_success


def test_idempotency_keys_answer_alike_and_replay_across_both_paths(s: Scenario, p: Pair) -> None:
    h = auth(s.publisher.token(), **{"Idempotency-Key": "k" * 201})
    r = both(p, path(s.topic), content=body(person(1)), headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "header.Idempotency-Key"
    for first, second in ((p.fast, p.slow), (p.slow, p.fast)):
        key = auth(s.publisher.token(), **{"Idempotency-Key": uuid.uuid4().hex})
        one = first.post(path(s.topic), content=body(person(3)), headers=key)
        again = second.post(path(s.topic), content=body(person(3)), headers=key)
        assert one.status_code == again.status_code == 200
        assert again.json() == one.json() and again.headers["idempotent-replayed"] == "true"
        other = second.post(path(s.topic), content=body(person(4)), headers=key)
        assert other.status_code == 409
        assert answer(other) == answer(
            first.post(path(s.topic), content=body(person(4)), headers=key)
        )


def test_avro_frames_answer_alike(s: Scenario, p: Pair, gateway: ThreadGateway) -> None:
    sid = int(gateway.services.registry.version(s.subject, "latest").id)
    good = frames(sid, PERSON_SCHEMA, [("k", person(5)), (None, person(6))])
    h = auth(s.publisher.token(), **{"Content-Type": AVRO})
    assert len(both(p, path(s.topic), content=good, headers=h).json()["offsets"]) == 2
    assert both(p, path(s.topic), content=good[:-3], headers=h).status_code == 422
    wrong = frames(sid + 10_000, PERSON_SCHEMA, [("k", person(5))])
    assert both(p, path(s.topic), content=wrong, headers=h).status_code == 422


def test_a_rate_limited_caller_is_refused_alike(
    s: Scenario, gateway: ThreadGateway, served: list[str]
) -> None:
    tight = pair(gateway.services, served, limiter=lambda: RateLimiter(0.001, 1))
    h, good = auth(s.publisher.token()), body(person(1))
    assert both(tight, path(s.topic), content=good, headers=h).is_success
    r = both(tight, path(s.topic), content=good, headers=h)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_other_methods_and_paths_are_left_to_the_framework(s: Scenario, p: Pair) -> None:
    h = auth(s.publisher.token())
    assert both(p, path(s.topic), method="GET", headers=h, fast_path=False).status_code == 405
    slash = both(p, path(s.topic) + "/", headers=h, fast_path=False, follow_redirects=False)
    assert slash.status_code == 307
    nested = f"/v1/topics/{s.topic}/records/x"
    assert both(p, nested, content=b"{}", headers=h, fast_path=False).status_code == 404


def test_access_log_and_openapi_are_unchanged(
    s: Scenario, p: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="exchange.access"):
        both(p, path(s.topic), content=body(person(1)), headers=auth(s.publisher.token()))
    lines = [r for r in caplog.records if r.name == "exchange.access"]
    assert [(getattr(r, "route", ""), getattr(r, "status", 0)) for r in lines] == [(ROUTE, 200)] * 2
    assert p.fast.get("/openapi.json").json() == p.slow.get("/openapi.json").json()

"""Concurrent SSE streams are capped per client (issue 12 item 12), the count follows streams
that end, and one client's streams do not hold up another client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from tests.support.gateway import ThreadGateway
from tests.support.scenario import Scenario, build, grant, new_client, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]
CAP = 3
_READERS: list[Iterator[bytes]] = []  # an iterator collected early would close its stream


@pytest.fixture(scope="module")
def gw(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadGateway]:
    g = ThreadGateway(
        tmp_path_factory.mktemp("sse-cap"), kafka_bootstrap, sse_streams_per_client=CAP
    ).start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def s(gw: ThreadGateway) -> Iterator[Scenario]:
    with gw.admin() as admin:
        scenario = build(admin, gw.url)
    grant(scenario, ["name"])
    yield scenario
    scenario.close()


def open_stream(stack: ExitStack, http: httpx.Client, token: str, sub_id: str) -> httpx.Response:
    r = stack.enter_context(
        http.stream(
            "GET",
            f"/v1/subscriptions/{sub_id}/stream",
            headers={"Authorization": f"Bearer {token}"},
        )
    )
    if r.status_code == 200:
        reader = r.iter_raw()
        _READERS.append(reader)
        assert next(reader).startswith(b": connected")  # the server is streaming
    return r


def test_streams_beyond_the_cap_are_429_and_slots_come_back(s: Scenario, gw: ThreadGateway) -> None:
    sub = s.subscriber.call("POST", "/v1/subscriptions", json={"topic": s.topic})
    token = s.subscriber.token()
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        first = ExitStack()
        for _ in range(CAP):
            assert open_stream(first, http, token, sub["id"]).status_code == 200
        with ExitStack() as extra:
            r = open_stream(extra, http, token, sub["id"])
            assert r.status_code == 429
            r.read()
            assert f"at most {CAP}" in r.json()["detail"]
            assert r.headers["Retry-After"]
        assert gw.services.streams.open(s.subscriber.client_id) == CAP

        first.close()  # the client goes away: every slot must come back
        deadline = time.monotonic() + 10
        while gw.services.streams.open(s.subscriber.client_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gw.services.streams.open(s.subscriber.client_id) == 0
        with ExitStack() as again:
            for _ in range(CAP):
                assert open_stream(again, http, token, sub["id"]).status_code == 200


def test_one_clients_streams_do_not_slow_another_client(s: Scenario, gw: ThreadGateway) -> None:
    with gw.admin() as admin:
        other = new_client(admin, gw.url, s.consumer, ["subscriber"])
    s.publisher.publish(s.topic, [{"key": f"k{i}", "value": person(i)} for i in range(2_000)])
    busy = s.subscriber.call("POST", "/v1/subscriptions", json={"topic": s.topic})
    quiet = other.call("POST", "/v1/subscriptions", json={"topic": s.topic, "start": "latest"})
    token = s.subscriber.token()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as http, ExitStack() as streams:
            opened = [open_stream(streams, http, token, busy["id"]) for _ in range(CAP)]
            assert all(r.status_code == 200 for r in opened)  # all catching up on 2,000 records
            slowest = 0.0
            for _ in range(5):
                t0 = time.monotonic()
                other.call("GET", f"/v1/subscriptions/{quiet['id']}/records", params={"wait_ms": 0})
                slowest = max(slowest, time.monotonic() - t0)
            assert slowest < 2.0, f"another client's pull took {slowest:.2f} s"
    finally:
        other.close()

"""When the policy store cannot answer, nothing is delivered and the API says 503."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consent.agreements import Agreements
from consent.consents import Consents
from exchange.client import ApiError, ExchangeClient
from exchange.db import make_engine, session_factory
from tests.support.gateway import ThreadGateway
from tests.support.scenario import Scenario, build, grant, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@pytest.fixture
def store_down(gateway: ThreadGateway, tmp_path: Path) -> Iterator[None]:
    """Point the agreement and consent services at a database that cannot be opened."""
    agreements: Agreements = gateway.services.agreements
    consents: Consents = gateway.services.consents
    saved = agreements.sessions, consents.sessions
    broken = make_engine(f"sqlite:///{tmp_path / 'absent' / 'cp.db'}")
    agreements.sessions = consents.sessions = session_factory(broken)
    agreements.forget_cached_grants()  # the next read goes to the (broken) store
    try:
        yield
    finally:
        agreements.sessions, consents.sessions = saved
        agreements.forget_cached_grants()
        broken.dispose()


@pytest.fixture
def s(gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[Scenario]:
    scenario = build(admin, gateway.url)
    yield scenario
    scenario.close()


def test_policy_store_down_delivers_nothing(s: Scenario, request: pytest.FixtureRequest) -> None:
    grant(s, ["name"])
    deadline = time.monotonic() + 3
    while True:  # approval reaches the delivery side's grant cache within about 1 s
        try:
            sub = s.subscriber.subscribe(s.topic)
            break
        except ApiError as exc:
            if exc.status != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    s.publisher.publish(s.topic, [{"key": "a", "value": person(1)}])

    request.getfixturevalue("store_down")
    # Within the delivery side's one-second access cache the last answer may still serve;
    # after it, every pull must fail closed.
    deadline = time.monotonic() + 3
    status = 200
    while status == 200 and time.monotonic() < deadline:
        status = s.subscriber.request(
            "GET", f"/v1/subscriptions/{sub}/records?wait_ms=0"
        ).status_code
    assert status == 503
    with pytest.raises(ApiError) as listed:
        s.subscriber.call("GET", "/v1/agreements")
    assert listed.value.status == 503
    assert listed.value.body["code"] == "dependency_unavailable"

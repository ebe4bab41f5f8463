"""Session fixtures: one real Kafka broker and one in-process gateway for the whole run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from exchange.client import ExchangeClient
from exchange.kafka.security import KafkaSecurity
from tests.support.gateway import ThreadGateway
from tests.support.kafka import TestKafka, kafka_for_tests
from tests.support.keycloak import Keycloak

# Timing is for bench/, not tests: a loaded machine must not fail a property on its deadline.
settings.register_profile("exchange", deadline=None)
settings.load_profile("exchange")


@pytest.fixture(scope="session")
def test_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestKafka]:
    with kafka_for_tests(tmp_path_factory.mktemp("kafka")) as kafka:
        yield kafka


@pytest.fixture(scope="session")
def kafka_bootstrap(test_kafka: TestKafka) -> str:
    return test_kafka.bootstrap


@pytest.fixture(scope="session")
def kafka_security(test_kafka: TestKafka) -> KafkaSecurity:
    """The credentials the exchange's own clients use with the test broker."""
    return test_kafka.security


@pytest.fixture(scope="session")
def kafka_log_dir(test_kafka: TestKafka) -> Path:
    """The broker's log directory (to inspect segment files); skips if the broker is remote."""
    if test_kafka.log_dir is None:
        pytest.skip("broker data directory not on this machine")
    return test_kafka.log_dir


@pytest.fixture(scope="session")
def gateway(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadGateway]:
    gw = ThreadGateway(tmp_path_factory.mktemp("gateway-home"), kafka_bootstrap).start()
    yield gw
    gw.stop()


@pytest.fixture(scope="session")
def admin(gateway: ThreadGateway) -> Iterator[ExchangeClient]:
    with gateway.admin() as c:
        yield c


@pytest.fixture(scope="session")
def security_officer(gateway: ThreadGateway) -> Iterator[ExchangeClient]:
    """The bootstrap auditor (``auditor-credentials.json``); it alone mints auditors."""
    with gateway.auditor() as c:
        yield c


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Keycloak costs ~40 s to start: only tests that say so (and can be deselected) get it.
    if "keycloak" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("keycloak"):
        pytest.fail("the keycloak fixture is for tests marked @pytest.mark.keycloak")


@pytest.fixture(scope="session")
def keycloak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keycloak]:
    """One real Keycloak for the session, started only when a test marked ``keycloak`` asks."""
    kc = Keycloak(tmp_path_factory.mktemp("keycloak")).start()
    yield kc
    kc.stop()


@pytest.fixture
def unique() -> str:
    """A short unique suffix so tests sharing the session gateway do not collide."""
    return uuid.uuid4().hex[:8]


def make_department(
    admin: ExchangeClient, dept_id: str, level: str = "city", parent: str | None = None
) -> None:
    admin.call(
        "POST",
        "/v1/departments",
        json={"id": dept_id, "name": dept_id.title(), "level": level, "parent": parent},
    )


def make_client(
    admin: ExchangeClient, gateway_url: str, dept_id: str, roles: list[str]
) -> ExchangeClient:
    body = admin.call(
        "POST",
        f"/v1/departments/{dept_id}/clients",
        json={"name": f"{dept_id} app", "roles": roles},
    )
    return ExchangeClient(gateway_url, body["client_id"], body["client_secret"])

"""The catalog/agreements/consents CLI against the real gateway over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from exchange.client import ExchangeClient
from tests.support.gateway import ThreadGateway
from tests.support.scenario import Scenario, build, new_client, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]
runner = CliRunner()


@pytest.fixture
def s(gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[Scenario]:
    scenario = build(admin, gateway.url)
    yield scenario
    scenario.close()


def as_(c: ExchangeClient) -> list[str]:
    return ["--url", c.base_url, "--client-id", c.client_id, "--client-secret", c._secret]


def cli(*args: str, home: str | None = None) -> Any:
    env = {"EXCHANGE_HOME": home} if home else {}
    result = runner.invoke(app, [*args, "--output", "json"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_request_approve_list_and_consent_via_cli(
    s: Scenario, gateway: ThreadGateway, admin: ExchangeClient
) -> None:
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    ag = cli(
        "agreements", "request", "--topic", s.topic, "--field", "name", "--field", "income",
        "--purpose", "benefit check", "--valid-until", until, *as_(s.subscriber),
    )  # fmt: skip
    assert ag["status"] == "pending"
    done = cli("agreements", "approve", ag["id"], "--field", "name", *as_(s.steward))
    assert done["granted_fields"] == ["name"]
    # the admin's credentials come from $EXCHANGE_HOME by default
    listed = cli("agreements", "list", "--topic", s.topic, home=str(gateway.home))
    assert [a["id"] for a in listed] == [ag["id"]]
    found = cli("catalog", "list", "--dept", s.owner, home=str(gateway.home))
    assert [e["topic"] for e in found] == [s.topic]

    registrar = new_client(admin, gateway.url, s.owner, ["consent_registrar"])
    c = cli(
        "consents", "record", "--subject", person(1)["citizen_id"], "--consumer", s.consumer,
        "--topic", s.topic, "--purpose", "benefit check", "--valid-until", until,
        *as_(registrar),
    )  # fmt: skip
    claims = cli("consents", "verify", c["artefact"], home=str(gateway.home))
    assert claims["jti"] == c["id"]
    assert cli("consents", "revoke", c["id"], *as_(registrar))["status"] == "REVOKED"
    registrar.close()


def test_errors_are_one_line_with_nonzero_exit(s: Scenario) -> None:
    result = runner.invoke(app, ["agreements", "approve", "agr-missing", *as_(s.steward)])
    assert result.exit_code == 1
    assert "HTTP 404" in result.output and "Traceback" not in result.output

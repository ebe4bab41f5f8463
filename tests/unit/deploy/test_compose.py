"""compose.yaml cannot run here (no Docker engine); keep it structurally sound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return doc


def test_services_of_a_production_like_deployment() -> None:
    services = compose()["services"]
    assert {"kafka", "postgres", "keycloak", "gateway-1", "gateway-2", "lb"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_every_long_running_service_has_a_healthcheck() -> None:
    services = compose()["services"]
    for name in ("kafka", "postgres", "keycloak", "gateway-1", "gateway-2"):
        assert "healthcheck" in services[name], name


def test_gateways_share_postgres_kafka_and_the_master_key_without_defaults() -> None:
    services = compose()["services"]
    for name in ("gateway-1", "gateway-2"):
        env = services[name]["environment"]
        assert env["EXCHANGE_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["EXCHANGE_DATABASE_URL"].startswith("postgresql+psycopg://")
        # No secret has a default value: compose refuses to start without it.
        assert ":?" in env["EXCHANGE_MASTER_KEY"]
        assert ":?" in env["EXCHANGE_DATABASE_URL"]
    lb = services["lb"]
    assert lb["ports"] == ["8080:8080"]
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "gateway-1:8080" in conf and "gateway-2:8080" in conf

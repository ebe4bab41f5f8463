"""compose.yaml cannot run here (no Docker engine); keep it structurally sound."""

from __future__ import annotations

import json
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


def test_keycloak_imports_the_realm_the_tests_run_against() -> None:
    from tests.support.keycloak import KEYCLOAK_VERSION, REALM_FILE

    kc = compose()["services"]["keycloak"]
    assert "--import-realm" in kc["command"]
    host, container, _ = kc["volumes"][0].split(":")
    assert (ROOT / host).resolve() == REALM_FILE
    assert container.startswith("/opt/keycloak/data/import/")
    assert kc["image"].endswith(f":{KEYCLOAK_VERSION}")
    assert ":?" in kc["environment"]["KC_BOOTSTRAP_ADMIN_PASSWORD"]
    gateway = compose()["services"]["gateway-1"]["environment"]
    assert gateway["EXCHANGE_OIDC_ISSUER"] == f"{kc['environment']['KC_HOSTNAME']}/realms/exchange"


def test_the_realm_file_holds_no_secrets_and_maps_the_exchange_roles() -> None:
    from exchange.identity.roles import ALL_ROLES

    realm = json.loads((ROOT / "deploy/keycloak/realm-exchange.json").read_text())
    for client in realm["clients"]:
        assert "secret" not in client, client["clientId"]
        # Only the test client may trade a person's password for tokens.
        assert client.get("directAccessGrantsEnabled") is not True or (
            client["clientId"] == "exchange-password-test"
        )
    for user in realm["users"]:
        assert "credentials" not in user, user["username"]
    assert {r["name"] for r in realm["roles"]["realm"]} == ALL_ROLES
    assert realm["accessTokenLifespan"] <= 300


def test_gateway_replicas_have_stable_distinct_host_names() -> None:
    """The host name is part of a gateway's Kafka transactional ids: two replicas sharing
    one would fence each other; a name that changed on restart could not fence the last."""
    services = compose()["services"]
    names = [services[g].get("hostname") for g in ("gateway-1", "gateway-2")]
    assert None not in names and len(set(names)) == 2


def test_county_node_forwards_to_the_gateway_with_credentials_from_a_file() -> None:
    doc = compose()
    node = doc["services"]["county-node"]
    script = node["command"][0]
    assert "exchange node init" in script and "exchange node run" in script
    assert "/run/secrets/county-credentials" in script
    assert node["environment"]["EXCHANGE_NODE_GATEWAY"] == "http://lb:8080"
    assert not any("SECRET" in k for k in node["environment"])  # the secret is a file
    assert "county-credentials" in doc["secrets"]
    assert "healthcheck" in node and "kafka" not in node.get("depends_on", {})


def test_a_two_site_layout_with_mirrormaker_of_the_broker_release() -> None:
    services = compose()["services"]
    two = {n for n, s in services.items() if "two-sites" in s.get("profiles", [])}
    assert two == {"league-kafka", "league-gateway", "region-mirror"}
    assert services["league-gateway"]["environment"]["EXCHANGE_KAFKA_BOOTSTRAP"] == (
        "league-kafka:9092"
    )
    mirror = services["region-mirror"]
    assert mirror["image"] == services["kafka"]["image"]
    assert mirror["command"][-2:] == ["--clusters", "region"]
    assert ":?" in services["league-gateway"]["environment"]["EXCHANGE_MASTER_KEY"]
    assert services["league-gateway"]["hostname"] == "league-gateway"  # stable transactional ids

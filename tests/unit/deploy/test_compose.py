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
    assert two == {"league-kafka-format", "league-kafka", "league-gateway", "region-mirror"}
    assert services["league-gateway"]["environment"]["EXCHANGE_KAFKA_BOOTSTRAP"] == (
        "league-kafka:9092"
    )
    mirror = services["region-mirror"]
    assert mirror["image"] == services["kafka"]["image"]
    assert mirror["command"][-2:] == ["--clusters", "region"]
    assert ":?" in services["league-gateway"]["environment"]["EXCHANGE_MASTER_KEY"]
    assert services["league-gateway"]["hostname"] == "league-gateway"  # stable transactional ids


SASL = {"SASL_PLAINTEXT", "SASL_SSL"}


def brokers(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        n: s["environment"]
        for n, s in services.items()
        if "KAFKA_PROCESS_ROLES" in s.get("environment", {})
    }


def test_no_kafka_listener_speaks_plaintext_and_the_authorizer_denies_by_default() -> None:
    services = compose()["services"]
    found = brokers(services)
    assert {"kafka", "league-kafka"} <= set(found)
    for name, env in found.items():
        pairs = env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
        protocol = dict(p.split(":") for p in pairs)
        for key in ("KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS"):
            for listener in env[key].split(","):
                label = listener.split("://")[0]
                # a listener named PLAINTEXT (or absent from the map) is plaintext
                assert protocol.get(label) in SASL, (name, key, listener)
        assert "PLAINTEXT" not in protocol and set(protocol.values()) <= SASL, (name, protocol)
        assert env["KAFKA_LISTENER_NAME_CLIENT_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
        assert env["KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL"] == "SCRAM-SHA-512"
        assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith(".StandardAuthorizer")
        assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
        for jaas in (
            env["KAFKA_LISTENER_NAME_CLIENT_SCRAM___SHA___512_SASL_JAAS_CONFIG"],
            env["KAFKA_LISTENER_NAME_CONTROLLER_PLAIN_SASL_JAAS_CONFIG"],
        ):
            assert 'password="${' in jaas and ":?" in jaas, name  # from the env, no default
        assert "ports" not in services[name]  # reached over the compose network only
        assert "--command-config" in services[name]["healthcheck"]["test"][1]  # speaks SASL too


def test_gateways_reach_their_broker_as_its_scram_super_user_from_the_environment() -> None:
    services = compose()["services"]
    found = brokers(services)
    clients = {
        n: s for n, s in services.items() if "EXCHANGE_KAFKA_BOOTSTRAP" in s.get("environment", {})
    }
    assert {"gateway-1", "gateway-2", "league-gateway"} <= set(clients)
    for name, svc in clients.items():
        env = svc["environment"]
        broker = env["EXCHANGE_KAFKA_BOOTSTRAP"].split(":")[0]
        assert env["EXCHANGE_KAFKA_SECURITY_PROTOCOL"] in SASL, name
        assert env["EXCHANGE_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        user = env["EXCHANGE_KAFKA_SASL_USERNAME"]
        assert f"User:{user}" in found[broker]["KAFKA_SUPER_USERS"].split(";")
        password = env["EXCHANGE_KAFKA_SASL_PASSWORD"]
        assert password.startswith("${") and ":?" in password, name
        # the same variable is the broker's JAAS password and the format step's SCRAM user
        variable = password[2:].split(":")[0]
        assert f"${{{variable}:?" in found[broker][
            "KAFKA_LISTENER_NAME_CLIENT_SCRAM___SHA___512_SASL_JAAS_CONFIG"
        ]
        [fmt] = services[broker]["depends_on"]
        assert services[fmt]["environment"]["EXCHANGE_PASSWORD"].startswith(f"${{{variable}:?")
        assert f"--add-scram \"SCRAM-SHA-512=[name={user}," in services[fmt]["command"][0]

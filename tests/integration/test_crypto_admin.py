"""Key administration over HTTP (the gateway fixture) and through the CLI."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from audit.factory import open_audit, open_log
from audit.service import Filters
from cli.main import app as cli
from exchange.auditing import AuditRecord, MemoryAuditSink
from exchange.client import ExchangeClient
from exchange.crypto import FieldCrypto, build_field_crypto
from exchange.db import make_engine, migrate, session_factory
from exchange.kafka import open_kafka
from exchange.kafka.security import KafkaSecurity
from exchange.secrets_store import load_master_key
from exchange.settings import Settings
from tests.conftest import make_client, make_department
from tests.support.gateway import ThreadGateway

FIELDS: dict[str, Any] = {"ssn": "string", "income": ["null", "long"]}
RECORD = {"id": "r1", "ssn": "SSN-42", "income": 12}


def _seal(crypto: FieldCrypto, topic: str, owner: str) -> dict[str, Any]:
    return crypto.seal(
        topic=topic, owner=owner, sealed_schema_id=1, key=b"r1", record=RECORD, fields=FIELDS
    )


def _open(crypto: FieldCrypto, topic: str, sealed: dict[str, Any]) -> Any:
    return crypto.open(
        topic=topic,
        sealed_schema_id=1,
        key=b"r1",
        record=sealed,
        fields=FIELDS,
        granted=set(FIELDS),
    )


@pytest.mark.e2e
@pytest.mark.kafka
def test_key_routes(gateway: ThreadGateway, admin: ExchangeClient) -> None:
    tag = uuid.uuid4().hex[:6]
    owner, other = f"keys-own-{tag}", f"keys-oth-{tag}"
    make_department(admin, owner)
    make_department(admin, other)
    steward = make_client(admin, gateway.url, owner, ["steward"])
    stranger = make_client(admin, gateway.url, other, ["steward"])
    publisher = make_client(admin, gateway.url, owner, ["publisher"])
    crypto: FieldCrypto = gateway.services.crypto
    topic = f"{owner}.people"
    sealed = _seal(crypto, topic, owner)

    keys = steward.call("GET", "/v1/keys", params={"topic": topic})
    assert {(k["field"], k["version"], k["state"]) for k in keys} == {
        ("ssn", 1, "active"),
        ("income", 1, "active"),
    }
    assert all(k["kek"] == f"{owner}#v1" for k in keys)
    assert stranger.call("GET", "/v1/keys", params={"topic": topic}) == []
    assert publisher.request("GET", "/v1/keys").status_code == 403

    rotated = steward.call("POST", "/v1/keys/rotate", json={"topic": topic, "field": "ssn"})
    assert [(k["field"], k["version"]) for k in rotated] == [("ssn", 2)]
    r = stranger.request("POST", "/v1/keys/shred", json={"topic": topic})
    assert r.status_code == 404  # others' topics look absent

    kek = admin.call("POST", f"/v1/kms/keks/{owner}/rotate")
    assert kek == {"department": owner, "rewrapped": 3}
    assert stranger.request("POST", f"/v1/kms/keks/{owner}/rotate").status_code == 403
    assert _open(crypto, topic, sealed).value == RECORD

    r = admin.request("POST", "/v1/keys/shred", json={"topic": topic, "before": "2020-01-01T00:00"})
    assert r.status_code == 422  # a cutoff without a time zone is ambiguous
    out = steward.call("POST", "/v1/keys/shred", json={"topic": topic, "field": "ssn"})
    assert out == {"topic": topic, "shredded": 2}
    opened = _open(crypto, topic, sealed)
    assert opened.value == {**RECORD, "ssn": None} and opened.redacted == {"ssn": "shredded"}
    metrics = admin.call("GET", "/v1/kms/metrics")
    assert metrics["wrap"]["calls"] >= 3
    assert steward.request("GET", "/v1/kms/metrics").status_code == 403


def test_cli_keys_and_kms(tmp_path: Path) -> None:
    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    offline = [*home, "--offline"]  # this home's database and KMS, no gateway
    first = runner.invoke(cli, ["kms", "init", *home])
    assert first.exit_code == 0 and "created" in first.output
    again = runner.invoke(cli, ["kms", "init", "--department", "civil", *home])
    assert (
        again.exit_code == 0 and "exists" in again.output and "civil: KEK civil#v1" in again.output
    )
    settings = Settings(home=tmp_path)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    crypto = build_field_crypto(
        settings, session_factory(engine), MemoryAuditSink(), load_master_key(settings)
    )
    sealed = _seal(crypto, "civil.cli", "civil")

    listed = runner.invoke(cli, ["keys", "list", "--topic", "civil.cli", *offline])
    assert listed.exit_code == 0, listed.output
    assert "ssn" in listed.output and "civil#v1" in listed.output and "SSN-42" not in listed.output
    rotated = runner.invoke(cli, ["keys", "rotate", "--topic", "civil.cli", *offline])
    assert rotated.exit_code == 0 and rotated.output.count("active") == 2
    refused = runner.invoke(cli, ["keys", "shred", "--topic", "civil.cli", *offline], input="n\n")
    assert refused.exit_code != 0
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    shred = runner.invoke(
        cli,
        [
            "keys",
            "shred",
            "--topic",
            "civil.cli",
            "--field",
            "ssn",
            "--before",
            tomorrow,
            "--yes",
            *offline,
        ],
    )
    assert shred.exit_code == 0 and "shredded 2" in shred.output
    crypto.clear_cache()  # another process shredded: this one drops its cached keys
    assert _open(crypto, "civil.cli", sealed).redacted == {"ssn": "shredded"}
    found = open_audit(settings, session_factory(engine), None).service.query(
        Filters(topic="civil.cli", type="key.shredded")
    )
    assert len(found) >= 2 and "SSN-42" not in json.dumps([e.to_json() for e in found])
    kek = runner.invoke(cli, ["keys", "rotate-kek", "--department", "civil", *offline])
    assert kek.exit_code == 0 and "re-wrapped 2" in kek.output
    bad = runner.invoke(cli, ["keys", "shred", "--topic", "t", "--before", "x", "--yes", *offline])
    assert bad.exit_code == 1 and "not an ISO date" in bad.output
    engine.dispose()


@pytest.mark.kafka
def test_offline_key_commands_on_a_live_home_keep_its_kafka_audit_topic_whole(
    tmp_path: Path, kafka_bootstrap: str, kafka_security: KafkaSecurity, monkeypatch: Any
) -> None:
    """A home whose audit log lives in Kafka (the gateway appends through the topic): key
    commands run --offline append there too, so `audit verify --source kafka` still passes.
    They used to append to the index only: the topic then lacked them and verify reported a
    false "deleted" (TAMPERED)."""
    env = {
        "EXCHANGE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "EXCHANGE_AUDIT_TOPIC": f"_exchange.audit.keys-{uuid.uuid4().hex[:8]}",  # its own log
    } | kafka_security.as_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    assert runner.invoke(cli, ["kms", "init", *home]).exit_code == 0
    settings = Settings(home=tmp_path)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    kafka = open_kafka(kafka_bootstrap, "test-keys-live", security=kafka_security)
    try:
        live = open_log(settings, session_factory(engine), kafka)  # as the gateway's
        crypto = build_field_crypto(
            settings, session_factory(engine), live, load_master_key(settings)
        )
        _seal(crypto, "civil.live", "civil")  # keys created: audited through Kafka
        for args in (
            ["keys", "rotate", "--topic", "civil.live"],
            ["keys", "shred", "--topic", "civil.live", "--field", "ssn", "--yes"],
            ["keys", "rotate-kek", "--department", "civil"],
            ["kms", "init", "--department", "county"],
        ):
            r = runner.invoke(cli, [*args, *home, *([] if args[0] == "kms" else ["--offline"])])
            assert r.exit_code == 0, r.output
        live.append(AuditRecord("system.stopped", actor="system"))  # the gateway goes on
        types = {e.type for e in open_audit(settings, session_factory(engine), None)
                 .service.query(Filters(), limit=100)}  # fmt: skip
        assert {"key.rotated", "key.shredded", "kek.rotated"} <= types, types
        verified = runner.invoke(cli, ["audit", "verify", "--offline", "--source", "kafka", *home])
        assert verified.exit_code == 0, verified.output
        assert "ok:" in verified.stdout
    finally:
        kafka.close()
        engine.dispose()


def test_offline_key_commands_refuse_a_home_whose_own_broker_is_stopped(tmp_path: Path) -> None:
    """Its audit topic cannot take the event: no key decision (fail closed), nothing changed."""
    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    assert runner.invoke(cli, ["kms", "init", *home]).exit_code == 0
    (tmp_path / "kafka").mkdir(mode=0o700)
    (tmp_path / "kafka" / "credentials.json").write_text("{}")  # a broker ran here once
    r = runner.invoke(cli, ["keys", "rotate-kek", "--department", "civil", *home, "--offline"])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "exchange kafka start" in r.output
    listed = runner.invoke(cli, ["keys", "list", *home, "--offline"])  # reading needs no Kafka
    assert listed.exit_code == 0, listed.output

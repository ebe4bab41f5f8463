"""The gateway is the only door to the embedded broker: SASL/SCRAM, deny-by-default ACLs.

Every refusal is checked twice: the client fails, and nothing it tried to write arrived."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ScramMechanism, UserScramCredentialDeletion, UserScramCredentialUpsertion
from kafka.errors import KafkaError
from pydantic import SecretStr

from exchange.client import ExchangeClient
from exchange.errors import KafkaUnavailable
from exchange.kafka import KafkaClient, open_kafka
from exchange.kafka.broker import LocalBroker
from exchange.kafka.client import KafkaAdapter, OutRecord
from exchange.kafka.security import KafkaSecurity, write_properties_file
from tests.support.gateway import ThreadGateway
from tests.support.kafka import TestKafka
from tests.support.scenario import build, person

pytestmark = [pytest.mark.kafka]

AUDIT_TOPIC = "_exchange.audit"
QUICK = {"request_timeout_ms": 4000, "bootstrap_timeout_ms": 4000}


@pytest.fixture(scope="module")
def broker(test_kafka: TestKafka) -> TestKafka:
    if test_kafka.home is None or not test_kafka.security.uses_sasl:
        pytest.skip("these tests need the embedded broker (SASL + ACLs)")
    return test_kafka


@pytest.fixture(scope="module")
def exchange_kafka(broker: TestKafka) -> Iterator[KafkaAdapter]:
    kafka = KafkaAdapter(broker.bootstrap, client_id="access-test", security=broker.security)
    yield kafka
    kafka.close()


@pytest.fixture(scope="module")
def dept_topic(broker: TestKafka, gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[str]:
    """A department topic with records, published through the gateway over SASL."""
    s = build(admin, gateway.url, partitions=1)
    s.publisher.publish(s.topic, [{"key": "1", "value": person(1)}])
    yield s.topic
    s.close()


def _ends(kafka: KafkaAdapter, topic: str) -> dict[int, int]:
    reader = kafka.reader(topic)
    try:
        return reader.end_offsets()
    finally:
        reader.close()


class BrokerLog:
    """Counts the broker's own refusal lines, so a test knows *why* a client failed."""

    NO_SASL = "during SASL handshake"  # a plaintext request on the SASL listener
    BAD_LOGIN = "invalid credentials with SASL mechanism SCRAM-SHA-512"

    def __init__(self, home: Path) -> None:
        self.path = home / "kafka" / "logs" / "server.log"
        self.start = self.path.stat().st_size

    def new_lines(self, needle: str) -> int:
        with self.path.open("rb") as f:
            f.seek(self.start)
            return sum(needle in line for line in f.read().decode(errors="replace").splitlines())


def _records(kafka: KafkaAdapter, topic: str) -> int:
    reader = kafka.reader(topic)
    try:
        reader.seek({})
        return sum(len(reader.poll(timeout_ms=300)) for _ in range(10))
    finally:
        reader.close()


def _try_produce(bootstrap: str, topic: str, **auth: Any) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **QUICK, **auth)
    try:
        producer.send(topic, value=b"injected").get(timeout=6)
    finally:
        producer.close(timeout=1)


def _try_read(bootstrap: str, topic: str, **auth: Any) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **QUICK, **auth)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        return [m.value for batch in consumer.poll(timeout_ms=3000).values() for m in batch]
    finally:
        consumer.close()


def _scram(user: str, password: str) -> dict[str, Any]:
    sec = KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", user, SecretStr(password))
    return sec.kafka_python_config()


def test_the_gateway_publishes_and_audits_over_sasl(
    dept_topic: str, exchange_kafka: KafkaAdapter
) -> None:
    assert _records(exchange_kafka, dept_topic) == 1
    assert _records(exchange_kafka, AUDIT_TOPIC) > 0


@pytest.mark.parametrize("target", ["audit", "department"])
def test_no_credentials_cannot_read_or_inject(
    target: str, broker: TestKafka, dept_topic: str, exchange_kafka: KafkaAdapter
) -> None:
    topic = AUDIT_TOPIC if target == "audit" else dept_topic
    before = _ends(exchange_kafka, topic)
    assert broker.home is not None
    log = BrokerLog(broker.home)
    with pytest.raises(KafkaError, match="Unable to bootstrap"):
        _try_read(broker.bootstrap, topic)
    with pytest.raises(KafkaError, match="Unable to bootstrap"):
        _try_produce(broker.bootstrap, topic)
    assert _ends(exchange_kafka, topic) == before
    assert log.new_lines(BrokerLog.NO_SASL) >= 2  # refused by the broker, not a timeout


def test_wrong_password_is_refused(
    broker: TestKafka, dept_topic: str, exchange_kafka: KafkaAdapter
) -> None:
    before = _ends(exchange_kafka, dept_topic)
    assert broker.home is not None
    log = BrokerLog(broker.home)
    wrong = _scram("exchange", "not-the-password")
    with pytest.raises(KafkaError, match="Unable to bootstrap"):
        _try_produce(broker.bootstrap, dept_topic, **wrong)
    with pytest.raises(KafkaError, match="Unable to bootstrap"):
        _try_read(broker.bootstrap, AUDIT_TOPIC, **wrong)
    assert _ends(exchange_kafka, dept_topic) == before
    assert log.new_lines(BrokerLog.BAD_LOGIN) >= 2


def test_an_authenticated_principal_without_acls_is_denied(
    broker: TestKafka, dept_topic: str, exchange_kafka: KafkaAdapter
) -> None:
    """allow.everyone.if.no.acl.found=false: a valid login alone grants nothing."""
    user, password = f"intruder-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    admin = KafkaAdminClient(
        bootstrap_servers=broker.bootstrap, **broker.security.kafka_python_config()
    )
    try:
        errors = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(user, ScramMechanism.SCRAM_SHA_512, password)]
        )
        assert errors == {user: None}
        before = {t: _ends(exchange_kafka, t) for t in (dept_topic, AUDIT_TOPIC)}
        creds = _scram(user, password)
        for topic in (dept_topic, AUDIT_TOPIC):
            with pytest.raises(KafkaError, match="Authorization"):
                _try_produce(broker.bootstrap, topic, **creds)
        # A denied consumer sees no partitions or gets an authorization error: never records.
        try:
            leaked = _try_read(broker.bootstrap, AUDIT_TOPIC, **creds)
        except KafkaError:
            leaked = []
        assert leaked == []
        assert {t: _ends(exchange_kafka, t) for t in before} == before
    finally:
        admin.alter_user_scram_credentials(
            [UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)]
        )
        admin.close()


def test_controller_listener_takes_no_client_traffic(broker: TestKafka) -> None:
    assert broker.home is not None
    state = LocalBroker(broker.home).state()
    assert state is not None
    controller = f"127.0.0.1:{state.controller_port}"
    for auth in ({}, broker.security.kafka_python_config()):  # SCRAM is not accepted there
        with pytest.raises(KafkaError):
            KafkaAdminClient(bootstrap_servers=controller, **QUICK, **auth).list_topics()


def test_properties_file_lets_an_operator_read(
    broker: TestKafka, exchange_kafka: KafkaAdapter, tmp_path: Path
) -> None:
    """The file `exchange kafka status` prints, read the way a Java tool reads it."""
    assert broker.home is not None
    path = write_properties_file(broker.home, broker.security)
    props = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    jaas = re.fullmatch(
        r'\S+ScramLoginModule required username="([^"]+)" password="([^"]+)";',
        props["sasl.jaas.config"],
    )
    assert jaas is not None
    topic = f"ops-{uuid.uuid4().hex[:6]}"
    exchange_kafka.create_topic(topic, 1)
    exchange_kafka.send_durably(topic, OutRecord(b"k", b"for the operator"))
    values = _try_read(
        broker.bootstrap,
        topic,
        security_protocol=props["security.protocol"],
        sasl_mechanism=props["sasl.mechanism"],
        sasl_plain_username=jaas.group(1),
        sasl_plain_password=jaas.group(2),
    )
    assert values == [b"for the operator"]


def test_passwords_reach_no_log_and_no_command_line(broker: TestKafka) -> None:
    """Kafka logs its config with passwords hidden; the format step used a 0600 argfile."""
    assert broker.home is not None
    creds = json.loads((broker.home / "kafka" / "credentials.json").read_text())
    secrets = [creds["password"].encode(), creds["controller_password"].encode()]
    logs = b"".join(p.read_bytes() for p in (broker.home / "kafka" / "logs").glob("*.log"))
    assert logs and not [s for s in secrets if s in logs]
    state = LocalBroker(broker.home).state()
    assert state is not None
    cmdline = Path(f"/proc/{state.pid}/cmdline").read_bytes()
    assert b"server.properties" in cmdline and not [s for s in secrets if s in cmdline]
    assert not (broker.home / "kafka" / ".format.args").exists()


@pytest.mark.parametrize("backend", ["librdkafka", "kafka-python"])
def test_both_adapters_fail_closed_with_a_wrong_password(
    backend: KafkaClient, broker: TestKafka, dept_topic: str, exchange_kafka: KafkaAdapter
) -> None:
    """The gateway's own adapters, misconfigured: KafkaUnavailable, nothing written."""
    before = _ends(exchange_kafka, dept_topic)
    wrong = KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", "exchange", SecretStr("wrong"))
    kafka = open_kafka(broker.bootstrap, "wrong", backend, request_timeout_ms=3000, security=wrong)
    try:
        with pytest.raises(KafkaUnavailable):
            kafka.send_durably(dept_topic, OutRecord(b"k", b"injected"))
    finally:
        kafka.close()
    assert _ends(exchange_kafka, dept_topic) == before

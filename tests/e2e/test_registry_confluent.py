"""The real confluent-kafka SchemaRegistryClient, AvroSerializer and AvroDeserializer against
our gateway's /registry, producing to and consuming from the real broker."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from exchange.client import ExchangeClient
from tests.conftest import make_client, make_department
from tests.support.gateway import ThreadGateway
from tests.support.kafka import security_for

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

PERSON = """{"type": "record", "name": "Person", "namespace": "gov.civil",
 "fields": [{"name": "name", "type": "string", "classification": "sensitive"},
            {"name": "born", "type": "int", "default": 0}]}"""


def oauth_conf(gw: ThreadGateway, client: ExchangeClient) -> dict[str, Any]:
    return {
        "url": f"{gw.url}/registry",
        "bearer.auth.credentials.source": "OAUTHBEARER",
        "bearer.auth.client.id": client.client_id,
        "bearer.auth.client.secret": client._secret,
        "bearer.auth.scope": "registry:read registry:write",
        "bearer.auth.issuer.endpoint.url": f"{gw.url}/oauth/token",
        "bearer.auth.logical.cluster": "lsrc-exchange",  # required by the client; ignored
        "bearer.auth.identity.pool.id": "pool-ignored",
        "max.retries": 0,
    }


@pytest.fixture
def dept(admin: ExchangeClient, unique: str) -> str:
    make_department(admin, f"reg-{unique}")
    return f"reg-{unique}"


@pytest.fixture
def writer_client(gateway: ThreadGateway, admin: ExchangeClient, dept: str) -> ExchangeClient:
    # Subjects belong to the department named before their first dot.
    return make_client(admin, gateway.url, dept, ["registry:read", "registry:write"])


def test_serializer_roundtrip_through_kafka_with_oauth(
    gateway: ThreadGateway, writer_client: ExchangeClient, kafka_bootstrap: str, dept: str
) -> None:
    topic = f"{dept}.reg-e2e"
    gateway.services.kafka.ensure_topic(topic)
    sr = SchemaRegistryClient(oauth_conf(gateway, writer_client))
    serializer = AvroSerializer(sr, PERSON)
    ctx = SerializationContext(topic, MessageField.VALUE)
    payload = serializer({"name": "Ada", "born": 1815}, ctx)
    assert payload is not None and payload[0] == 0

    auth = security_for(kafka_bootstrap).librdkafka_config()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, **auth})
    producer.produce(topic, value=payload)
    assert producer.flush(30) == 0

    # A separate client (HTTP Basic this time) resolves the id the record carries.
    reader_sr = SchemaRegistryClient(
        {
            "url": f"{gateway.url}/registry",
            "basic.auth.user.info": f"{writer_client.client_id}:{writer_client._secret}",
        }
    )
    deserializer = AvroDeserializer(reader_sr)
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"g-{dept}",
            "enable.auto.commit": False,
            **auth,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        deadline = time.monotonic() + 30
        msg = None
        while msg is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error():
                msg = None
        assert msg is not None, "record not consumed in time"
        assert deserializer(msg.value(), ctx) == {"name": "Ada", "born": 1815}
    finally:
        consumer.close()

    latest = sr.get_latest_version(f"{topic}-value")
    assert latest.version == 1
    assert sr.get_subjects() and f"{topic}-value" in sr.get_subjects()
    # The same schema registered again keeps its id; the id's schema is the registered one.
    assert sr.register_schema(f"{topic}-value", Schema(PERSON, "AVRO")) == latest.schema_id
    assert "Person" in reader_sr.get_schema(latest.schema_id).schema_str


def test_client_sees_confluent_errors(
    gateway: ThreadGateway, writer_client: ExchangeClient, dept: str
) -> None:
    sr = SchemaRegistryClient(oauth_conf(gateway, writer_client))
    subject = f"{dept}.errs-value"
    with pytest.raises(SchemaRegistryError) as e:
        sr.get_latest_version(subject)
    assert (e.value.http_status_code, e.value.error_code) == (404, 40401)
    with pytest.raises(SchemaRegistryError) as e:
        sr.register_schema(subject, Schema('{"type": "record", "name": "X"}', "AVRO"))
    assert (e.value.http_status_code, e.value.error_code) == (422, 42201)
    sr.register_schema(subject, Schema(PERSON, "AVRO"))
    incompatible = PERSON.replace('"type": "int", "default": 0', '"type": "string"')
    assert not sr.test_compatibility(subject, Schema(incompatible, "AVRO"))
    with pytest.raises(SchemaRegistryError) as e:
        sr.register_schema(subject, Schema(incompatible, "AVRO"))
    assert (e.value.http_status_code, e.value.error_code) == (409, 40901)
    sr.set_compatibility(subject, "NONE")
    assert sr.get_compatibility(subject) == "NONE"
    assert sr.register_schema(subject, Schema(incompatible, "AVRO")) > 0
    assert sr.delete_subject(subject) == [1, 2]
    assert sr.delete_subject(subject, permanent=True) == [1, 2]
    assert subject not in sr.get_subjects()


def test_references_through_serializer(
    gateway: ThreadGateway, writer_client: ExchangeClient, dept: str
) -> None:
    from confluent_kafka.schema_registry import SchemaReference

    sr = SchemaRegistryClient(oauth_conf(gateway, writer_client))
    address = """{"type": "record", "name": "Address", "namespace": "gov.civil",
                  "fields": [{"name": "street", "type": "string", "classification": "secret"}]}"""
    sr.register_schema(f"{dept}.address", Schema(address, "AVRO"))
    resident = """{"type": "record", "name": "Resident", "namespace": "gov.civil",
                   "fields": [{"name": "home", "type": "gov.civil.Address"}]}"""
    refs = [SchemaReference("gov.civil.Address", f"{dept}.address", 1)]
    topic = f"{dept}.residents"
    ctx = SerializationContext(topic, MessageField.VALUE)
    data = AvroSerializer(sr, Schema(resident, "AVRO", refs))({"home": {"street": "Elm"}}, ctx)
    assert AvroDeserializer(sr)(data, ctx) == {"home": {"street": "Elm"}}
    latest = sr.get_latest_version(f"{topic}-value")
    assert [r.subject for r in latest.schema.references] == [f"{dept}.address"]
    assert sr.get_referenced_by(f"{dept}.address", 1) == [latest.schema_id]
    with pytest.raises(SchemaRegistryError) as e:
        sr.delete_subject(f"{dept}.address")
    assert e.value.error_code == 42206
    fields = writer_client.call("GET", f"/registry/subjects/{topic}-value/versions/1/fields")
    assert {f["path"]: f["classification"] for f in fields} == {
        "home": "internal",
        "home.street": "secret",
    }

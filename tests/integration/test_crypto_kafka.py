"""Sealed records through the real broker: a raw consumer sees ciphertext only.

Records are sealed with FieldCrypto, encoded by fastavro under the sealed schema in the
Confluent wire format, produced through the Kafka port, then read back by an independent
client (confluent-kafka) as raw bytes: no known sensitive value appears, a standard Avro
decode works and shows envelope bytes, and FieldCrypto opens them again.
"""

from __future__ import annotations

import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, TopicPartition

from exchange import wire
from exchange.auditing import MemoryAuditSink
from exchange.crypto import build_field_crypto, sealed_fields, sealed_schema
from exchange.db import make_engine, migrate, session_factory
from exchange.kafka import open_kafka
from exchange.kafka.port import OutRecord
from exchange.settings import Settings
from tests.support.kafka import security_for

pytestmark = pytest.mark.kafka

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Citizen",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "ssn", "type": "string"},
        {"name": "phone", "type": ["null", "string"]},
        {"name": "income", "type": "long"},
        {
            "name": "address",
            "type": {
                "type": "record",
                "name": "Addr",
                "fields": [
                    {"name": "street", "type": "string"},
                    {"name": "district", "type": "string"},
                ],
            },
        },
    ],
}
SENSITIVE = {"name", "ssn", "phone", "income", "address.street"}


def _raw_values(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            **security_for(bootstrap).librdkafka_config(),
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
        return got
    finally:
        consumer.close()


def test_raw_consumer_sees_no_plaintext(kafka_bootstrap: str, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    crypto = build_field_crypto(
        Settings(home=tmp_path), sessions, MemoryAuditSink(), secrets.token_bytes(32)
    )
    topic = f"civil.citizens-{uuid.uuid4().hex[:8]}"
    sealed = sealed_schema(SCHEMA, SENSITIVE)
    fields = sealed_fields(sealed)
    parsed = fastavro.parse_schema(sealed)
    schema_id = 4242
    secrets_seen: list[bytes] = []
    originals, out = [], []
    for i in range(20):
        rec = {
            "id": f"c-{i}",
            "name": f"Zhang Wei-{secrets.token_hex(4)}",
            "ssn": f"SSN-{secrets.token_hex(8)}",
            "phone": f"+86-{secrets.token_hex(5)}" if i % 2 else None,
            "income": 987_654_321_000 + i,
            "address": {"street": f"{i} Hidden Street", "district": "North"},
        }
        originals.append(rec)
        secrets_seen += [
            rec["name"].encode(),
            rec["ssn"].encode(),
            rec["address"]["street"].encode(),
        ]
        if rec["phone"]:
            secrets_seen.append(rec["phone"].encode())
        key = rec["id"].encode()
        value = crypto.seal(
            topic=topic,
            owner="civil",
            cipher="SM4_GCM" if i % 3 == 0 else "AES256_GCM",
            sealed_schema_id=schema_id,
            key=key,
            record=rec,
            fields=fields,
        )
        out.append(OutRecord(key, wire.encode(schema_id, parsed, value)))

    adapter = open_kafka(
        kafka_bootstrap, f"crypto-{uuid.uuid4().hex[:6]}", security=security_for(kafka_bootstrap)
    )
    try:
        adapter.create_topic(topic, 1)
        adapter.publish_atomically(topic, out)
    finally:
        adapter.close()

    raw = _raw_values(kafka_bootstrap, topic, len(out))
    assert len(raw) == len(out)
    blob = b"\n".join(raw)
    for s in secrets_seen:
        assert s not in blob
    assert b"North" in blob  # non-sensitive fields stay readable

    for value, rec in zip(raw, originals, strict=True):
        sid, body = wire.unframe(value)
        decoded = wire.decode_body(parsed, body)  # a standard consumer's view
        assert isinstance(decoded["ssn"], bytes) and decoded["ssn"][0] == 1
        assert decoded["id"] == rec["id"] and decoded["address"]["district"] == "North"
        opened = crypto.open(
            topic=topic,
            sealed_schema_id=sid,
            key=rec["id"].encode(),
            record=decoded,
            fields=fields,
            granted=set(fields),
        )
        assert opened.value == rec and opened.redacted == {}
    engine.dispose()

"""FieldCrypto + KeyManager against a real SQLite control plane (all migrations applied)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from exchange.auditing import MemoryAuditSink
from exchange.crypto import FieldCrypto, RotationPolicy, build_field_crypto, sealed_fields
from exchange.crypto.kms_memory import MemoryKms
from exchange.crypto.sealing import sealed_schema
from exchange.db import make_engine, migrate, session_factory
from exchange.errors import DependencyUnavailable
from exchange.settings import Settings

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Patient",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "ssn", "type": "string"},
        {"name": "age", "type": ["null", "int"]},
        {"name": "score", "type": "double"},
        {"name": "codes", "type": {"type": "array", "items": "long"}},
        {
            "name": "address",
            "type": {
                "type": "record",
                "name": "Address",
                "fields": [
                    {"name": "street", "type": "string"},
                    {"name": "city", "type": "string"},
                ],
            },
        },
    ],
}
SENSITIVE = {"ssn", "age", "codes", "address.street"}
FIELDS = sealed_fields(sealed_schema(SCHEMA, SENSITIVE))
RECORD = {
    "id": "p-1",
    "ssn": "110101199003071234",
    "age": 41,
    "score": 0.5,
    "codes": [7, 8],
    "address": {"street": "1 Secret Lane", "city": "Springfield"},
}
ALL = set(FIELDS)


@dataclass
class Env:
    crypto: FieldCrypto
    kms: MemoryKms
    audit: MemoryAuditSink
    topic: str
    clock: list[datetime]


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Any:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('db') / 'x.db'}")
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def env(sessions: Any, tmp_path: Path) -> Iterator[Env]:
    kms, audit = MemoryKms(), MemoryAuditSink()
    clock = [datetime.now(UTC)]
    crypto = build_field_crypto(
        Settings(home=tmp_path), sessions, audit, secrets.token_bytes(32), kms=kms
    )
    crypto.keys.clock = lambda: clock[0]
    yield Env(crypto, kms, audit, f"health.t{secrets.token_hex(4)}", clock)


def seal(e: Env, record: dict[str, Any] = RECORD, key: bytes | None = b"p-1", **kw: Any) -> Any:
    args: dict[str, Any] = {"topic": e.topic, "owner": "health", "sealed_schema_id": 5}
    args.update(kw)
    return e.crypto.seal(key=key, record=record, fields=FIELDS, **args)


def open_(e: Env, sealed: dict[str, Any], granted: set[str] = ALL, **kw: Any) -> Any:
    args: dict[str, Any] = {"topic": e.topic, "sealed_schema_id": 5, "key": b"p-1"}
    args.update(kw)
    return e.crypto.open(record=sealed, fields=FIELDS, granted=granted, **args)


@pytest.mark.parametrize("cipher", ["AES256_GCM", "SM4_GCM"])
def test_roundtrip(env: Env, cipher: str) -> None:
    sealed = seal(env, cipher=cipher)
    for path in ("ssn", "age", "codes"):
        assert isinstance(sealed[path], bytes) and sealed[path][1] == (1 if cipher[0] == "A" else 2)
    assert isinstance(sealed["address"]["street"], bytes)
    assert sealed["address"]["city"] == "Springfield" and sealed["score"] == 0.5
    assert RECORD["ssn"] == "110101199003071234"  # input untouched
    opened = open_(env, sealed)
    assert opened.value == RECORD and opened.redacted == {}


def test_null_branch_and_missing_nested_record(env: Env) -> None:
    rec = {**RECORD, "age": None}
    assert open_(env, seal(env, rec)).value == rec


def test_not_granted_fields_are_omitted(env: Env) -> None:
    opened = open_(env, seal(env), granted={"ssn"})
    assert opened.value["ssn"] == RECORD["ssn"]
    assert "age" not in opened.value and "codes" not in opened.value
    assert opened.value["address"] == {"city": "Springfield"}
    assert opened.redacted == {}
    # granting an enclosing record grants its sealed fields
    assert open_(env, seal(env), granted={"address"}).value["address"] == RECORD["address"]


@pytest.mark.parametrize(
    ("change", "moved_path"),
    [
        ({"topic": "health.other"}, "ssn"),
        ({"key": b"p-2"}, "ssn"),
        ({"sealed_schema_id": 6}, "ssn"),
    ],
    ids=["topic", "record", "schema"],
)
def test_moved_between_records_and_topics_fails(
    env: Env, change: dict[str, Any], moved_path: str
) -> None:
    opened = open_(env, seal(env), **change)
    assert opened.value[moved_path] is None
    assert set(opened.redacted.values()) == {"integrity"}
    assert opened.redacted.keys() == ALL
    assert RECORD["ssn"] not in repr(opened)


def test_moved_between_fields_and_records_fails(env: Env) -> None:
    a = seal(env)
    b = seal(env, {**RECORD, "id": "p-2", "ssn": "other"}, key=b"p-2")
    swapped_field = {**a, "ssn": a["age"]}  # age's envelope in the ssn field
    opened = open_(env, swapped_field)
    assert opened.value["ssn"] is None and opened.redacted == {"ssn": "integrity"}
    assert opened.value["age"] == 41
    swapped_record = {**a, "ssn": b["ssn"]}  # another record's ssn under this key
    assert open_(env, swapped_record).redacted == {"ssn": "integrity"}


def test_tampered_ciphertext_fails_closed(env: Env) -> None:
    sealed = seal(env)
    env_bytes = bytearray(sealed["ssn"])
    env_bytes[-5] ^= 0x40
    opened = open_(env, {**sealed, "ssn": bytes(env_bytes)})
    assert opened.value["ssn"] is None and opened.redacted == {"ssn": "integrity"}
    for junk in (b"", b"\x01", b"plain text", "not-bytes"):
        assert open_(env, {**sealed, "ssn": junk}).redacted == {"ssn": "integrity"}


def test_rotation_keeps_old_data_readable(env: Env) -> None:
    old = seal(env)
    infos = env.crypto.keys.rotate(env.topic, "ssn")
    assert [(i.field, i.version) for i in infos] == [("ssn", 2)]
    new = seal(env)
    assert new["ssn"][3:19] == old["ssn"][3:19]  # same DEK id ...
    assert new["ssn"][19:23] != old["ssn"][19:23]  # ... new version
    assert open_(env, old).value == RECORD and open_(env, new).value == RECORD
    states = {(k.field, k.version): k.state for k in env.crypto.keys.list_keys(env.topic)}
    assert states[("ssn", 1)] == "retired" and states[("ssn", 2)] == "active"
    assert "key.rotated" in [r.type for r in env.audit.records]


def test_rotation_by_age_and_by_count(env: Env) -> None:
    seal(env)
    env.clock[0] += timedelta(days=91)
    rotated = [i for i in env.crypto.keys.rotate_due() if i.topic == env.topic]
    assert {i.field for i in rotated} == ALL and all(i.version == 2 for i in rotated)
    env.crypto.keys.policy = RotationPolicy(max_age=None, max_uses=2)
    env.crypto.clear_cache()  # ready keys were handed out under the old policy
    versions = set()
    for _ in range(5):
        versions.add(seal(env)["ssn"][19:23])
    assert len(versions) == 3  # 5 seals, 2 per version


def test_switching_cipher_rotates(env: Env) -> None:
    a = seal(env)
    b = seal(env, cipher="SM4_GCM")
    assert a["ssn"][1] == 1 and b["ssn"][1] == 2
    assert open_(env, a).value == RECORD and open_(env, b).value == RECORD


def test_shredding_makes_data_unreadable(env: Env) -> None:
    old = seal(env)
    cutoff = env.clock[0] + timedelta(seconds=1)
    env.clock[0] += timedelta(seconds=2)
    env.crypto.keys.rotate(env.topic)
    newer = seal(env)
    count = env.crypto.keys.shred(env.topic, "ssn", before=cutoff, actor="admin-1")
    assert count == 1
    opened = open_(env, old)
    assert opened.value["ssn"] is None and opened.redacted == {"ssn": "shredded"}
    assert opened.value["age"] == 41  # other fields unaffected
    assert open_(env, newer).value == RECORD  # versions after the cutoff survive
    assert env.crypto.keys.shred(env.topic) == 7  # everything else of the topic
    gone = open_(env, newer)
    assert gone.redacted == dict.fromkeys(ALL, "shredded")
    assert all(
        r.actor == "admin-1"
        for r in env.audit.records
        if r.type == "key.shredded" and r.data["field"] == "ssn" and r.data["version"] == 1
    )
    # sealing again after a shred starts a fresh version, never reusing a shredded number
    fresh = seal(env)
    assert int.from_bytes(fresh["ssn"][19:23], "big") == 3
    assert open_(env, fresh).value == RECORD
    shredded = [k for k in env.crypto.keys.list_keys(env.topic) if k.state == "shredded"]
    assert len(shredded) == 8 and all(k.shredded_at is not None for k in shredded)


def test_kms_unavailable_fails_closed(env: Env) -> None:
    sealed = seal(env)
    env.kms.available = False
    with pytest.raises(DependencyUnavailable):
        seal(env, topic=env.topic + "x")  # a new DEK needs the KMS
    env.crypto.keys.kms.clear()  # cached DEKs expired
    with pytest.raises(DependencyUnavailable):
        open_(env, sealed)
    env.kms.available = True
    assert open_(env, sealed).value == RECORD


def test_kek_rotation_rewraps_without_touching_data(env: Env) -> None:
    sealed = seal(env, owner="health-kek")
    n = env.crypto.keys.rotate_kek("health-kek", actor="admin-1")
    assert n == 4
    assert {k.kek for k in env.crypto.keys.list_keys(env.topic)} == {"health-kek#v2"}
    env.crypto.keys.kms.clear()
    assert open_(env, sealed).value == RECORD
    event = [r for r in env.audit.records if r.type == "kek.rotated"][-1]
    assert event.data == {"from": "health-kek#v1", "to": "health-kek#v2", "rewrapped": 4}


def test_audit_never_holds_key_material_or_plaintext(env: Env) -> None:
    open_(env, seal(env))
    env.crypto.keys.shred(env.topic)
    types = [r.type for r in env.audit.records]
    assert types.count("key.created") == 4 and types.count("key.shredded") == 4
    text = repr(env.audit.records) + repr(env.crypto.metrics.snapshot())
    assert RECORD["ssn"] not in text and "Secret Lane" not in text
    for info in env.crypto.keys.list_keys(env.topic):
        assert "key" not in {f for f in vars(info)}


def test_two_instances_racing_on_a_new_topic_share_one_key(sessions: Any, tmp_path: Path) -> None:
    """Two gateways (two FieldCrypto over one DB and KMS) seal a new topic at once."""
    from concurrent.futures import ThreadPoolExecutor

    kms, audit = MemoryKms(), MemoryAuditSink()
    topic, clock = f"health.race{secrets.token_hex(4)}", [datetime.now(UTC)]
    envs = [
        Env(
            build_field_crypto(
                Settings(home=tmp_path), sessions, audit, secrets.token_bytes(32), kms=kms
            ),
            kms,
            audit,
            topic,
            clock,
        )
        for _ in range(2)
    ]
    with ThreadPoolExecutor(8) as pool:
        sealed = list(pool.map(lambda i: seal(envs[i % 2]), range(16)))
    keys = envs[0].crypto.keys.list_keys(topic)
    assert sorted((k.field, k.version) for k in keys) == sorted((f, 1) for f in FIELDS)
    for s in sealed:
        assert open_(envs[0], s).value == RECORD and open_(envs[1], s).value == RECORD

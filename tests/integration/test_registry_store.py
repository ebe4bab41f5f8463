"""The registry service over a real SQLite database: semantics, durability, concurrency."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import fastavro
import pytest
from alembic import command
from sqlalchemy import text

from exchange.auditing import MemoryAuditSink
from exchange.db import alembic_config, make_engine, migrate, session_factory
from schemas.canonical import parse
from schemas.errors import (
    ClassificationDowngrade,
    IdDoesNotMatch,
    IncompatibleSchema,
    InvalidSchema,
    OperationNotPermitted,
    ReferenceExists,
    SchemaNotFound,
    SubjectNotFound,
    SubjectNotSoftDeleted,
    SubjectSoftDeleted,
    VersionNotFound,
)
from schemas.registry import SchemaRegistry


def record(name: str, *fields: dict[str, object]) -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "t", "fields": list(fields)})


V1 = record("P", {"name": "name", "type": "string", "classification": "sensitive"})
V2 = record(
    "P",
    {"name": "name", "type": "string", "classification": "sensitive"},
    {"name": "age", "type": "int", "default": 0},
)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/control.db"
    migrate(make_engine(url))
    return url


@pytest.fixture
def audit() -> MemoryAuditSink:
    return MemoryAuditSink()


@pytest.fixture
def reg(db_url: str, audit: MemoryAuditSink) -> Iterator[SchemaRegistry]:
    engine = make_engine(db_url)
    yield SchemaRegistry(session_factory(engine), audit)
    engine.dispose()


def test_register_versions_and_identity(reg: SchemaRegistry, audit: MemoryAuditSink) -> None:
    first = reg.register("p-value", V1, actor="alice")
    assert reg.register("p-value", json.dumps(json.loads(V1), indent=2)) == first
    assert reg.register("other-value", V1) == first  # one id per schema, across subjects
    second = reg.register("p-value", V2)
    assert second != first
    assert reg.versions("p-value") == [1, 2]
    latest = reg.version("p-value")
    compact = json.dumps(json.loads(V2), separators=(",", ":"))  # Confluent's stored form
    assert (latest.version, latest.id, latest.schema) == (2, second, compact)
    assert reg.version("p-value", 1).id == first
    assert reg.lookup("p-value", V1).version == 1
    stored = reg.by_id(second)
    assert [(f.path, f.classification.value) for f in stored.fields] == [
        ("name", "sensitive"),
        ("age", "internal"),
    ]
    assert stored.parsed["name"] == "t.P"
    assert reg.usages(first) == [("other-value", 1), ("p-value", 1)]
    kinds = [(r.type, r.actor, r.data.get("version")) for r in audit.records]
    assert kinds[0] == ("schema.registered", "alice", 1)
    assert len(kinds) == 3  # re-registrations change nothing and are not audited


def test_doc_and_custom_properties_make_new_versions(reg: SchemaRegistry) -> None:
    reg.set_config("d-value", "NONE")
    first = reg.register("d-value", V1)
    documented = json.loads(V1) | {"doc": "now with a doc"}
    second = reg.register("d-value", json.dumps(documented))
    assert second != first and reg.versions("d-value") == [1, 2]
    assert json.loads(reg.version("d-value").schema)["doc"] == "now with a doc"


def test_a_hard_deleted_schema_never_lends_its_text(reg: SchemaRegistry) -> None:
    reg.set_config("u-value", "NONE")
    x = reg.register("u-value", '{"type":"string","unique":"X"}')
    reg.delete_subject("u-value")
    reg.delete_subject("u-value", permanent=True)
    y = reg.register("u-value", '{"type":"string","unique":"Y"}')
    assert y != x
    assert reg.by_id(y).schema == '{"type":"string","unique":"Y"}'
    assert reg.by_id(x).schema == '{"type":"string","unique":"X"}'
    # the same text again gets its old id back, as in Confluent
    assert reg.register("u-value", '{"type": "string", "unique": "X"}') == x


def test_errors(reg: SchemaRegistry) -> None:
    with pytest.raises(SubjectNotFound):
        reg.version("nope")
    with pytest.raises(SchemaNotFound):
        reg.by_id(999)
    with pytest.raises(InvalidSchema):
        reg.register("p-value", '{"type": "record"}')
    with pytest.raises(InvalidSchema):
        reg.register("p-value", V1, schema_type="PROTOBUF")
    reg.register("p-value", V1)
    with pytest.raises(VersionNotFound):
        reg.version("p-value", 7)
    with pytest.raises(SchemaNotFound):
        reg.lookup("p-value", V2)
    with pytest.raises(IncompatibleSchema) as exc:
        reg.register("p-value", record("P", {"name": "name", "type": "int"}))
    assert exc.value.messages and "TYPE_MISMATCH" in exc.value.messages[0]


def test_classification_downgrade_needs_admin(reg: SchemaRegistry) -> None:
    reg.register("c-value", V1)
    lowered = record("P", {"name": "name", "type": "string", "classification": "public"})
    with pytest.raises(ClassificationDowngrade):
        reg.register("c-value", lowered, actor="bob")
    raised = record("P", {"name": "name", "type": "string", "classification": "secret"})
    assert reg.register("c-value", raised, actor="bob") > 0
    assert reg.register("c-value", lowered, actor="root", actor_is_admin=True) > 0
    assert [f.classification.value for f in reg.fields("c-value")] == ["public"]


def test_downgrade_cannot_sneak_in(reg: SchemaRegistry) -> None:
    reg.set_config("s-value", "NONE")
    ssn = {"name": "ssn", "type": "string", "classification": "secret"}
    reg.register("s-value", record("P", ssn))
    public = record("P", {**ssn, "classification": "public"})
    # delete every version first, then register the lowered field
    reg.delete_subject("s-value")
    reg.delete_subject("s-value", permanent=True)
    with pytest.raises(ClassificationDowngrade):
        reg.register("s-value", public)
    # drop the field in one version, add it back lower in the next
    reg.register("s-value", record("P", {"name": "other", "type": "int"}))
    with pytest.raises(ClassificationDowngrade):
        reg.register("s-value", public)
    # IMPORT mode skips compatibility, not classification
    reg.set_mode("s-value", "IMPORT", force=True)
    with pytest.raises(ClassificationDowngrade):
        reg.register("s-value", public, schema_id=9999, version=50)


def test_levels_are_enforced_per_subject(reg: SchemaRegistry) -> None:
    a = {"name": "a", "type": "int"}
    reg.register("t-value", record("R", a))
    reg.register("t-value", record("R", a, {"name": "b", "type": "string", "default": "x"}))
    step3 = record("R", {"name": "b", "type": "string"})
    assert reg.check("t-value", step3) == []  # BACKWARD: against the latest only
    reg.set_config("t-value", "BACKWARD_TRANSITIVE")
    assert reg.check("t-value", step3, version=None) != []  # all versions, transitively
    # As in Confluent, /versions/latest and /versions/2 check against that one version only.
    assert reg.check("t-value", step3) == []
    assert reg.check("t-value", step3, version=2) == []
    with pytest.raises(IncompatibleSchema):
        reg.register("t-value", step3)
    reg.set_config(None, "NONE")
    assert reg.get_config(None).compatibility.value == "NONE"
    assert reg.get_config("t-value").compatibility.value == "BACKWARD_TRANSITIVE"
    reg.delete_config("t-value")
    assert reg.register("t-value", step3) > 0


def test_soft_and_permanent_delete(reg: SchemaRegistry) -> None:
    reg.register("d-value", V1)
    reg.register("d-value", V2)
    with pytest.raises(SubjectNotSoftDeleted):
        reg.delete_subject("d-value", permanent=True)
    assert reg.delete_version("d-value", 2) == 2
    assert reg.versions("d-value") == [1]
    assert reg.versions("d-value", deleted=True) == [1, 2]
    assert reg.delete_subject("d-value") == [1]
    assert "d-value" not in reg.subjects()
    assert "d-value" in reg.subjects(deleted=True)
    with pytest.raises(SubjectSoftDeleted):
        reg.delete_subject("d-value")
    assert reg.delete_subject("d-value", permanent=True) == [1, 2]
    with pytest.raises(SubjectNotFound):
        reg.versions("d-value", deleted=True)
    # ids are never reused: the same schema comes back with the same id, a new one gets a new id
    v3 = record("Q", {"name": "q", "type": "int"})
    assert reg.register("d-value", V1) == reg.lookup("d-value", V1).id
    assert reg.register("x-value", v3) > reg.by_id(reg.lookup("d-value", V1).id).id


def test_references(reg: SchemaRegistry) -> None:
    address = record("Address", {"name": "street", "type": "string", "classification": "secret"})
    reg.register("address", address)
    person = record("Person", {"name": "home", "type": "t.Address"})
    with pytest.raises(InvalidSchema):
        reg.register("person-value", person)
    refs = [{"name": "t.Address", "subject": "address", "version": 1}]
    pid = reg.register("person-value", person, refs)
    assert reg.register("person-value", person, refs) == pid
    stored = reg.by_id(pid)
    assert stored.references == refs
    assert [(f.path, f.classification.value) for f in stored.fields] == [
        ("home", "internal"),
        ("home.street", "secret"),
    ]
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, stored.parsed, {"home": {"street": "Main St"}})
    buf.seek(0)
    assert fastavro.schemaless_reader(buf, stored.parsed) == {"home": {"street": "Main St"}}
    assert reg.referenced_by("address", 1) == [pid]
    with pytest.raises(ReferenceExists):
        reg.delete_subject("address")
    # Once nothing live refers to it, it may go; the referring id stays readable.
    reg.delete_subject("person-value")
    reg.delete_subject("address")
    reg.delete_subject("address", permanent=True)
    fresh = SchemaRegistry(reg.sessions, MemoryAuditSink())  # no cache
    assert [f.path for f in fresh.by_id(pid).fields] == ["home", "home.street"]


def test_modes(reg: SchemaRegistry) -> None:
    reg.register("m-value", V1)
    reg.set_mode("m-value", "READONLY")
    with pytest.raises(OperationNotPermitted):
        reg.register("m-value", V2)
    with pytest.raises(OperationNotPermitted):
        reg.set_mode(None, "IMPORT")  # subjects exist
    reg.delete_mode("m-value")
    assert reg.register("m-value", V2) > 0
    reg.set_mode(None, "IMPORT", force=True)
    assert reg.register("imported", record("I", {"name": "i", "type": "int"}), schema_id=500,
                        version=7) == 500  # fmt: skip
    assert reg.version("imported").version == 7
    with pytest.raises(OperationNotPermitted, match="is not in read-write mode"):
        reg.register("imported", record("K", {"name": "k", "type": "int"}))  # IMPORT needs ids
    with pytest.raises(IdDoesNotMatch, match="already registered with id 500 instead of input"):
        reg.register("imported", record("I", {"name": "i", "type": "int"}), schema_id=501)
    with pytest.raises(OperationNotPermitted, match=r"with id 500 in context \. is not permitted"):
        reg.register("imported", record("L", {"name": "l", "type": "int"}), schema_id=500)
    reg.set_mode(None, "READWRITE")
    with pytest.raises(OperationNotPermitted, match="is not in import mode"):
        reg.register("after-import", record("J", {"name": "j", "type": "int"}), schema_id=900)
    assert reg.register("after-import", record("J", {"name": "j", "type": "int"})) > 500


def test_state_survives_restart(db_url: str) -> None:
    engine = make_engine(db_url)
    before = SchemaRegistry(session_factory(engine), MemoryAuditSink())
    ids = [before.register("r-value", V1), before.register("r-value", V2)]
    before.set_config("r-value", "FULL")
    engine.dispose()

    engine = make_engine(db_url)
    after = SchemaRegistry(session_factory(engine), MemoryAuditSink())
    assert [after.version("r-value", v).id for v in (1, 2)] == ids
    assert after.get_config("r-value").compatibility.value == "FULL"
    assert after.register("r-value", V2) == ids[1]
    assert after.register("new-value", record("N", {"name": "n", "type": "int"})) > max(ids)
    engine.dispose()


WORKER = """
import json, sys, time
from pathlib import Path
from exchange.auditing import MemoryAuditSink
from exchange.db import make_engine, session_factory
from schemas.registry import SchemaRegistry

url, me, go, n = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
reg = SchemaRegistry(session_factory(make_engine(url)), MemoryAuditSink())
def rec(name):
    return json.dumps({"type": "record", "name": name, "fields": [{"name": "x", "type": "int"}]})
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.005)
out = {"own": [], "shared": [], "dup": []}
for k in range(n):
    out["own"].append(reg.register(f"own-{me}", rec(f"Own{me}_{k}")))
    out["shared"].append(reg.register("shared", rec(f"Shared{k}")))
    # same new schema, different subjects (so different locks): one id for both
    out["dup"].append(reg.register(f"dup-{me}", rec(f"Dup{k}")))
print(json.dumps(out))
"""


def test_two_processes_assign_distinct_ids(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    SchemaRegistry(session_factory(engine), MemoryAuditSink()).set_config(None, "NONE")
    engine.dispose()
    go, n = tmp_path / "go", 15
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, db_url, str(p), str(go), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in (0, 1)
    ]
    time.sleep(0.5)  # let both import and connect, then release them together
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    own = results[0]["own"] + results[1]["own"]
    assert len(set(own)) == 2 * n  # every distinct schema got its own id
    assert results[0]["shared"] == results[1]["shared"]  # same schema, same id, either process
    assert results[0]["dup"] == results[1]["dup"]
    assert not set(own) & set(results[0]["shared"])
    engine = make_engine(db_url)
    reg = SchemaRegistry(session_factory(engine), MemoryAuditSink())
    assert reg.versions("shared") == list(range(1, n + 1))
    assert len({reg.version("shared", v).id for v in range(1, n + 1)}) == n
    engine.dispose()


def test_migration_restates_stored_schemas_in_confluents_form(tmp_path: Path) -> None:
    """Rows written under the old identity get Confluent's text and the new fingerprint."""
    url = f"sqlite:///{tmp_path}/old.db"
    cfg = alembic_config(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")
        command.downgrade(cfg, "ea3941ba7cd4")  # the registry as it was before issue 13
        conn.execute(
            text(
                "INSERT INTO registry_schemas (id, fingerprint, schema_type, schema, "
                "\"references\", dependencies, created_at) VALUES (7, 'old', 'AVRO', :s, '[]', "
                "'[]', '2026-01-01 00:00:00')"
            ),
            {"s": V2},
        )
        command.upgrade(cfg, "heads")
    reg = SchemaRegistry(session_factory(engine), MemoryAuditSink())
    assert reg.by_id(7).schema == json.dumps(json.loads(V2), separators=(",", ":"))
    with engine.begin() as conn:
        fp = conn.execute(text("SELECT fingerprint FROM registry_schemas WHERE id = 7")).scalar()
    assert fp == parse(V2).fingerprint
    engine.dispose()

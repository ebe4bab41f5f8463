"""Tamper with the stored audit log four ways, in the database and in the Kafka topic, and
check that ``exchange audit verify`` names the index.

Database: each case edits a copy of the SQLite file with plain SQL, as an insider with
database access would. Kafka: a topic's messages cannot be edited in place, so each case reads
the real audit topic, applies the change to that list and writes the result (same headers) to
a new topic, which ``verify --source kafka --topic`` then reads back from the broker.
"""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.events import decode
from audit.factory import Audit, open_audit
from audit.settings import AuditSettings, checkpoint_topic
from cli.main import app
from exchange.auditing import AuditRecord
from exchange.db import make_engine, migrate, session_factory
from exchange.kafka import open_kafka
from exchange.kafka.port import InRecord, OutRecord
from exchange.settings import Settings
from tests.support.kafka import security_for

pytestmark = pytest.mark.kafka
N = 40


@dataclass
class Log:
    home: Path
    topic: str
    audit: Audit
    messages: list[InRecord]


def record(i: int) -> AuditRecord:
    return AuditRecord(
        "record.delivered" if i % 2 else "record.published",
        actor=f"client-{i % 3}",
        department="health",
        topic="health.visits",
        data={"offsets": [i, i + 1], "n": i},
        subjects=(f"person-{i % 5}",),
    )


@pytest.fixture(scope="module")
def log(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    home = tmp_path_factory.mktemp("audit-home")
    topic = f"_exchange.audit.test-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        home=home,
        kafka_bootstrap=kafka_bootstrap,
        **security_for(kafka_bootstrap).settings_values(),
    )
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    kafka = open_kafka(kafka_bootstrap, "audit-tamper-test", security=security_for(kafka_bootstrap))
    audit = open_audit(
        settings, session_factory(engine), kafka, AuditSettings(topic=topic), announce=False
    )
    audit.log.append_many([record(i) for i in range(10)])
    audit.service.checkpoint()
    for i in range(10, 25):
        audit.log.append(record(i))
    audit.service.checkpoint()
    audit.log.append_many([record(i) for i in range(25, N)])
    audit.service.checkpoint()
    reader = kafka.reader(topic)
    reader.seek({})
    messages: list[InRecord] = []
    while len(messages) < N:
        messages += reader.poll(timeout_ms=2000)
    reader.close()
    engine.dispose()
    yield Log(home, topic, audit, messages)
    kafka.close()


def verify(
    home: Path, bootstrap: str, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    env = {"EXCHANGE_KAFKA_BOOTSTRAP": bootstrap, "EXCHANGE_HOME": str(home), **(env or {})}
    env |= security_for(bootstrap).as_env()
    result = CliRunner().invoke(
        app, ["audit", "verify", "--offline", "--home", str(home), *args], env=env
    )
    return result.exit_code, result.output


def test_untouched_log_verifies_from_db_and_kafka(log: Log, kafka_bootstrap: str) -> None:
    assert [decode(m.value).index for m in log.messages] == list(range(N))
    code, out = verify(log.home, kafka_bootstrap, "--source", "db")
    assert code == 0, out
    assert f"ok: {N} events" in out and "3 checkpoints verified" in out
    code, out = verify(log.home, kafka_bootstrap, "--source", "kafka", "--topic", log.topic)
    assert code == 0, out


# -- the database ---------------------------------------------------------------------------


def _copy(home: Path, dst: Path) -> Path:
    shutil.copytree(home, dst)
    return dst


def _sql(home: Path, *statements: str) -> None:
    con = sqlite3.connect(home / "audit.db")
    with con:
        for st in statements:
            con.execute(st)
    con.close()


DB_CASES: dict[str, tuple[list[str], int, str]] = {
    "modify": (
        ["UPDATE audit_events SET entry = replace(entry, '\"n\":17', '\"n\":71') WHERE idx = 17"],
        17,
        "modified",
    ),
    "delete": (
        ["DELETE FROM audit_subjects WHERE idx = 12", "DELETE FROM audit_events WHERE idx = 12"],
        12,
        "deleted",
    ),
    "swap": (
        [
            "UPDATE audit_events SET idx = -1 WHERE idx = 5",
            "UPDATE audit_events SET idx = 5 WHERE idx = 30",
            "UPDATE audit_events SET idx = 30 WHERE idx = -1",
        ],
        5,
        "reordered",
    ),
    "truncate": (
        [
            "DELETE FROM audit_subjects WHERE idx >= 33",
            "DELETE FROM audit_events WHERE idx >= 33",
            "UPDATE audit_head SET size = 33",
        ],
        33,
        "truncated",
    ),
}


@pytest.mark.parametrize("case", sorted(DB_CASES))
def test_database_tampering_is_named(
    case: str, log: Log, kafka_bootstrap: str, tmp_path: Path
) -> None:
    statements, index, kind = DB_CASES[case]
    home = _copy(log.home, tmp_path / "home")
    _sql(home, *statements)
    code, out = verify(home, kafka_bootstrap, "--source", "db")
    assert code == 1
    assert f"TAMPERED at index {index}: {kind}" in out, out


def test_database_modify_with_rehash_is_still_named(
    log: Log, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """An insider who also fixes the stored leaf hash is caught by the successor's link."""
    home = _copy(log.home, tmp_path / "home")
    con = sqlite3.connect(home / "audit.db")
    (entry,) = con.execute("SELECT entry FROM audit_events WHERE idx = 8").fetchone()
    forged = entry.replace(b'"n":8', b'"n":80')
    leaf = log.audit.log.h.leaf(forged)
    with con:
        con.execute(
            "UPDATE audit_events SET entry = ?, leaf_hash = ? WHERE idx = 8", (forged, leaf)
        )
    con.close()
    code, out = verify(home, kafka_bootstrap, "--source", "db")
    assert code == 1 and "TAMPERED at index 8: modified" in out, out


# -- the Kafka topic ------------------------------------------------------------------------


def _modify(ms: list[InRecord]) -> list[InRecord]:
    m = ms[21]
    forged = m.value.replace(b'"n":21', b'"n":99')
    assert forged != m.value
    return [*ms[:21], InRecord(m.topic, 0, 0, 0, m.key, forged, m.headers), *ms[22:]]


def _swap(ms: list[InRecord]) -> list[InRecord]:
    out = list(ms)
    out[9], out[10] = out[10], out[9]
    return out


KAFKA_CASES: dict[str, tuple[Callable[[list[InRecord]], list[InRecord]], int, str]] = {
    "modify": (_modify, 21, "modified"),
    "delete": (lambda ms: ms[:3] + ms[4:], 3, "deleted"),
    "swap": (_swap, 9, "reordered"),
    "truncate": (lambda ms: ms[:36], 36, "truncated"),
}


@pytest.mark.parametrize("case", sorted(KAFKA_CASES))
def test_kafka_tampering_is_named(case: str, log: Log, kafka_bootstrap: str) -> None:
    tamper, index, kind = KAFKA_CASES[case]
    copy = f"{log.topic}.{case}"
    kafka = open_kafka(kafka_bootstrap, "audit-tamper-copy", security=security_for(kafka_bootstrap))
    try:
        kafka.ensure_topic(copy, 1)
        kafka.send_many_durably(
            copy, [OutRecord(m.key, m.value, m.headers) for m in tamper(log.messages)]
        )
    finally:
        kafka.close()
    code, out = verify(log.home, kafka_bootstrap, "--source", "kafka", "--topic", copy)
    assert code == 1
    assert f"TAMPERED at index {index}: {kind}" in out, out


def test_insider_truncation_with_checkpoints_erased_needs_a_saved_checkpoint(
    log: Log, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Truncate, fix the head row and delete every stored checkpoint: the database alone now
    looks consistent, but the officer's saved checkpoint still names the index."""
    saved = tmp_path / "saved-checkpoint.txt"
    saved.write_text(log.audit.service.latest_checkpoint().note)  # type: ignore[union-attr]
    home = _copy(log.home, tmp_path / "home")
    _sql(
        home,
        "DELETE FROM audit_subjects WHERE idx >= 30",
        "DELETE FROM audit_events WHERE idx >= 30",
        "UPDATE audit_head SET size = 30, last_hash = (SELECT hex(leaf_hash) FROM audit_events"
        " WHERE idx = 29)",
        "DELETE FROM audit_checkpoints",
    )
    code, out = verify(home, kafka_bootstrap, "--source", "db")
    assert code == 0 and "not yet covered by a signed checkpoint" in out, out
    code, out = verify(home, kafka_bootstrap, "--source", "db", "--from-checkpoint", str(saved))
    assert code == 1 and "TAMPERED at index 30: truncated" in out, out


def test_kafka_keeps_its_own_checkpoints(log: Log, kafka_bootstrap: str, tmp_path: Path) -> None:
    """With every checkpoint erased from the database, the topic's truncation is still found
    by the signed notes kept in Kafka beside it."""
    copy = f"{log.topic}.erased"
    kafka = open_kafka(kafka_bootstrap, "audit-tamper-copy", security=security_for(kafka_bootstrap))
    try:
        reader = kafka.reader(checkpoint_topic(log.topic))
        reader.seek({})
        notes: list[InRecord] = []
        while len(notes) < 3:
            notes += reader.poll(timeout_ms=2000)
        reader.close()
        assert len(notes) == 3
        for name, records in ((copy, log.messages[:36]), (checkpoint_topic(copy), notes)):
            kafka.ensure_topic(name, 1)
            kafka.send_many_durably(name, [OutRecord(m.key, m.value, m.headers) for m in records])
    finally:
        kafka.close()
    home = _copy(log.home, tmp_path / "home")
    _sql(home, "DELETE FROM audit_checkpoints")
    code, out = verify(home, kafka_bootstrap, "--source", "kafka", "--topic", log.topic)
    assert code == 0 and "3 checkpoints verified" in out, out
    code, out = verify(home, kafka_bootstrap, "--source", "kafka", "--topic", copy)
    assert code == 1 and "TAMPERED at index 36: truncated" in out, out

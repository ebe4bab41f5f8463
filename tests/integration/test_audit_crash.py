"""Crashes between Kafka and the database must not make the audit log look tampered.

Kafka acknowledges a batch, then the index commit fails (a real SQLite database whose next
commit raises, as a crash or a lost database would). The next append — in the same process,
or in a new one starting up over the same database — adopts the batch from the topic instead
of handing its indexes out again, and ``verify`` passes from both the database and Kafka.

A Kafka-backed log commits its appends without an fsync (``synchronous=NORMAL`` on its own
connections; every other writer keeps ``FULL``), so a machine crash may also take index
commits that *succeeded*: put back a copy of ``audit.db`` taken before them, the log catches
up when it opens, before the first query.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from audit import store
from audit.database import dispose_all
from audit.events import decode
from audit.factory import Audit, open_audit
from audit.models import AuditEventRow, AuditHeadRow
from audit.queries import Filters
from audit.settings import AuditSettings
from audit.store import HEAD_ID
from exchange.auditing import AuditRecord
from exchange.db import make_engine, migrate, session_factory, transaction
from exchange.errors import DependencyUnavailable
from exchange.kafka import open_kafka
from exchange.kafka.port import KafkaPort
from exchange.settings import Settings
from tests.integration.test_audit_tamper import verify
from tests.support.kafka import security_for

pytestmark = pytest.mark.kafka


def rec(i: int) -> AuditRecord:
    return AuditRecord(
        "record.published", actor="client-1", department="health", topic="health.visits",
        data={"i": i}, subjects=(f"person-{i % 4}",),
    )  # fmt: skip


class FailNextCommit:
    """Arms a session-factory hook: the next commit after Kafka took the batch raises."""

    def __init__(self, audit: Audit) -> None:
        self.armed = 0
        self.failed = 0
        event.listen(audit.log.append_sessions, "before_commit", self._hook)

    def _hook(self, session: Session) -> None:
        if self.armed and any(isinstance(o, AuditHeadRow) for o in session.dirty):
            self.armed -= 1
            self.failed += 1
            raise RuntimeError("simulated crash before the index commit")


@pytest.fixture
def setup(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[Path, str, KafkaPort]]:
    home = tmp_path / "home"
    home.mkdir()
    kafka = open_kafka(kafka_bootstrap, "audit-crash-test", security=security_for(kafka_bootstrap))
    yield home, f"_exchange.audit.crash-{uuid.uuid4().hex[:8]}", kafka
    kafka.close()


def open_at(
    home: Path, topic: str, kafka: KafkaPort | None, bootstrap: str, *, announce: bool = True
) -> Audit:
    settings = Settings(
        home=home, kafka_bootstrap=bootstrap, **security_for(bootstrap).settings_values()
    )
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    a = AuditSettings(topic=topic)
    return open_audit(settings, session_factory(engine), kafka, a, announce=announce)


def indexes_in_kafka(kafka: KafkaPort, topic: str) -> list[int]:
    reader = kafka.reader(topic)
    reader.seek({})
    end = reader.end_offsets()[0]
    out: list[int] = []
    while reader.positions()[0] < end:
        out += [decode(m.value).index for m in reader.poll(timeout_ms=2000)]
    reader.close()
    return out


def check_verifies(home: Path, bootstrap: str, topic: str, size: int) -> None:
    for source in ("db", "kafka"):
        code, out = verify(home, bootstrap, "--source", source, "--topic", topic)
        assert code == 0 and f"ok: {size} events" in out, (source, out)


@pytest.mark.parametrize("overlap", [False, True], ids=["inline", "helper-thread"])
def test_failed_index_commit_in_a_live_process_is_adopted(
    setup: tuple[Path, str, KafkaPort],
    kafka_bootstrap: str,
    overlap: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Also when Kafka's end is asked on the helper thread while the batch is encoded (big
    batches): the batch is encoded again after the adopted events."""
    if overlap:
        monkeypatch.setattr(store, "OVERLAP_MIN", 1)
    home, topic, kafka = setup
    audit = open_at(home, topic, kafka, kafka_bootstrap)  # index 0: system.started
    audit.log.append_many([rec(i) for i in range(5)])
    fault = FailNextCommit(audit)
    fault.armed = 1
    with pytest.raises(DependencyUnavailable):
        audit.log.append_many([rec(i) for i in range(5, 9)])  # Kafka has it, the index not
    audit.log.append_many([rec(i) for i in range(9, 12)])
    audit.log.append(rec(12))
    kafka_idx = indexes_in_kafka(kafka, topic)
    print(f"kafka indexes={len(kafka_idx)} failed commits={fault.failed}")
    assert fault.failed == 1
    assert kafka_idx == list(range(14)), "an index was handed out twice"
    with transaction(audit.log.sessions) as s:
        assert list(s.scalars(select(AuditEventRow.idx).order_by(AuditEventRow.idx))) == list(
            range(14)
        )
    check_verifies(home, kafka_bootstrap, topic, 14)


def test_restart_after_a_crash_adopts_the_tail_even_without_a_known_offset(
    setup: tuple[Path, str, KafkaPort], kafka_bootstrap: str
) -> None:
    """A head written before it kept offsets: the tail is found by reading backwards."""
    home, topic, kafka = setup
    audit = open_at(home, topic, kafka, kafka_bootstrap)
    for i in range(300):  # more than the first backwards window
        audit.log.append(rec(i))
    fault = FailNextCommit(audit)
    fault.armed = 1
    with pytest.raises(DependencyUnavailable):
        audit.log.append_many([rec(i) for i in range(300, 310)])
    with transaction(audit.log.sessions) as s:
        head: Any = s.get(AuditHeadRow, HEAD_ID)
        head.kafka_next = None
    restarted = open_at(home, topic, kafka, kafka_bootstrap)  # appends system.started
    restarted.log.append(rec(310))
    kafka_idx = indexes_in_kafka(kafka, topic)
    print(f"kafka indexes={len(kafka_idx)} failed commits={fault.failed}")
    assert kafka_idx == list(range(313))
    check_verifies(home, kafka_bootstrap, topic, 313)


def test_only_the_append_of_a_kafka_backed_log_commits_without_fsync(
    setup: tuple[Path, str, KafkaPort], kafka_bootstrap: str
) -> None:
    """Read ``PRAGMA synchronous`` (2 = FULL, 1 = NORMAL) on the very connection of each
    commit: the appender's, checkpoint signing's, and an index-only log's on the same file."""
    home, topic, kafka = setup
    audit = open_at(home, topic, kafka, kafka_bootstrap)
    seen: dict[str, list[int]] = {"append": [], "other": [], "index-only": []}

    def probe(name: str) -> Any:
        def hook(session: Session) -> None:
            conn = session.connection()
            seen[name].append(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())

        return hook

    assert audit.log.append_sessions is not audit.log.sessions
    event.listen(audit.log.append_sessions, "before_commit", probe("append"))
    event.listen(audit.log.sessions, "before_commit", probe("other"))
    for i in range(3):
        audit.log.append_many([rec(i), rec(i + 1)])
        audit.service.checkpoint()  # the same file, its own (FULL) connections
    offline = open_at(home, topic, None, kafka_bootstrap)  # no Kafka: the index is the copy
    assert offline.log.append_sessions is offline.log.sessions
    event.listen(offline.log.sessions, "before_commit", probe("index-only"))
    offline.log.append(rec(9))
    print(seen)
    assert seen["append"] == [1, 1, 1]
    assert seen["other"] and set(seen["other"]) == {2}
    assert seen["index-only"] == [2]


def test_index_commits_lost_in_a_machine_crash_are_adopted_before_the_first_query(
    setup: tuple[Path, str, KafkaPort], kafka_bootstrap: str
) -> None:
    home, topic, kafka = setup
    audit = open_at(home, topic, kafka, kafka_bootstrap)  # index 0: system.started
    audit.log.append_many([rec(i) for i in range(5)])
    saved = home / "audit.db.saved"
    with sqlite3.connect(home / "audit.db") as src, sqlite3.connect(saved) as dst:
        src.backup(dst)  # the file as the disk held it before the next, unsynced commits
    audit.log.append_many([rec(i) for i in range(5, 9)])  # acknowledged: Kafka and the index
    audit.log.append(rec(9))
    dispose_all()  # the machine goes down; on restart the disk has the older file
    for suffix in ("-wal", "-shm"):
        (home / f"audit.db{suffix}").unlink(missing_ok=True)
    saved.replace(home / "audit.db")
    with sqlite3.connect(home / "audit.db") as db:
        assert db.execute("SELECT size FROM audit_head").fetchone() == (6,)
    restarted = open_at(home, topic, kafka, kafka_bootstrap, announce=False)
    seen = [e.index for e in restarted.service.query(Filters())]
    assert seen == list(range(11)), "the index answered before catching up with Kafka"
    restarted.log.append(rec(10))
    assert indexes_in_kafka(kafka, topic) == list(range(12))
    check_verifies(home, kafka_bootstrap, topic, 12)

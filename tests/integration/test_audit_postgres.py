"""Two gateway processes appending to one audit log over PostgreSQL and one Kafka topic.

The head-row lock must hand out indexes without gaps or duplicates across processes, and
Kafka must receive the events in index order, so both sources verify.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from audit.factory import open_audit
from audit.models import AuditHeadRow
from audit.settings import AuditSettings
from exchange.auditing import AuditRecord
from exchange.db import make_engine, migrate, session_factory, transaction
from exchange.kafka import open_kafka
from exchange.settings import Settings
from tests.integration.test_registry_postgres import pg_url  # noqa: F401 - the cluster fixture
from tests.support.kafka import security_for

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

WORKER = """
import sys, time
from pathlib import Path
from audit.factory import open_log
from audit.settings import AuditSettings
from exchange.auditing import AuditRecord
from exchange.db import make_engine, session_factory
from exchange.kafka import open_kafka
from exchange.settings import Settings

url, home, bootstrap, topic, go, me = sys.argv[1:7]
settings = Settings(home=Path(home), database_url=url, kafka_bootstrap=bootstrap)
kafka = open_kafka(bootstrap, f"audit-pg-{me}", security=settings.kafka_security())
log = open_log(settings, session_factory(make_engine(url)), kafka, AuditSettings(topic=topic),
               announce=False)
while not Path(go).exists():
    time.sleep(0.01)
for i in range(20):
    log.append(AuditRecord("pg.single", actor=f"proc-{me}", data={"i": i}))
    log.append_many([AuditRecord("pg.batch", actor=f"proc-{me}", data={"i": i, "k": k})
                     for k in range(3)])
kafka.close()
"""


def test_two_processes_share_one_log(
    pg_url: str,  # noqa: F811
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    home, go = tmp_path / "home", tmp_path / "go"
    home.mkdir()
    topic = f"_exchange.audit.pg-{uuid.uuid4().hex[:8]}"
    security = security_for(kafka_bootstrap)
    settings = Settings(
        home=home,
        database_url=pg_url,
        kafka_bootstrap=kafka_bootstrap,
        **security.settings_values(),
    )
    engine = make_engine(pg_url)
    migrate(engine)
    kafka = open_kafka(kafka_bootstrap, "audit-pg-main", security=security)
    audit = open_audit(
        settings, session_factory(engine), kafka, AuditSettings(topic=topic), announce=False
    )
    args = [pg_url, str(home), kafka_bootstrap, topic, str(go)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *args, str(me)],
            stderr=subprocess.PIPE,
            env={**os.environ, **security.as_env()},  # the worker's Settings read these
        )
        for me in (0, 1)
    ]
    time.sleep(0.5)
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    audit.service.checkpoint()
    for source in ("db", "kafka"):
        report = audit.service.verify(source)
        assert report.ok and report.size == 2 * 20 * 4, (source, report.line())
    kafka.close()
    engine.dispose()


def test_only_the_append_commits_asynchronously(
    pg_url: str,  # noqa: F811
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    """``synchronous_commit`` as each commit sees it: off in the appending transaction (Kafka
    holds the durable copy), on for checkpoint signing on the same sessions and afterwards
    (``SET LOCAL`` ends with its transaction; the pooled connection is reused)."""
    security = security_for(kafka_bootstrap)
    settings = Settings(
        home=tmp_path,
        database_url=pg_url,
        kafka_bootstrap=kafka_bootstrap,
        **security.settings_values(),
    )
    engine = make_engine(pg_url)
    migrate(engine)
    kafka = open_kafka(kafka_bootstrap, "audit-pg-sync", security=security)
    topic = f"_exchange.audit.pgsync-{uuid.uuid4().hex[:8]}"
    audit = open_audit(
        settings, session_factory(engine), kafka, AuditSettings(topic=topic), announce=False
    )
    assert audit.log.append_sessions is audit.log.sessions
    seen: list[tuple[bool, str]] = []

    def probe(session: Session) -> None:
        appending = any(isinstance(o, AuditHeadRow) for o in session.dirty)
        seen.append((appending, session.execute(text("SHOW synchronous_commit")).scalar_one()))

    event.listen(audit.log.sessions, "before_commit", probe)
    for i in range(3):
        audit.log.append_many([AuditRecord("pg.sync", actor="test", data={"i": i})] * 2)
        audit.service.checkpoint()
    event.remove(audit.log.sessions, "before_commit", probe)
    with transaction(audit.log.sessions) as s:
        after = s.execute(text("SHOW synchronous_commit")).scalar_one()
    print(seen, after)
    assert [v for appending, v in seen if appending] == ["off"] * 3
    assert {v for appending, v in seen if not appending} == {"on"}
    assert after == "on"
    kafka.close()
    engine.dispose()

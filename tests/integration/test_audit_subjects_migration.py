"""The subject table's bucketed layout (revision 9b8a7c6d5e4f) over a log written with the
old one, on SQLite and PostgreSQL: every row keeps its subject and index, subject queries
answer as before, the log still verifies, and appending goes on after the migrated buckets.

The old layout is produced by the revision's own downgrade from a log the current code
wrote (the old append code is gone); the test checks the downgraded table is the old one."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from audit.database import audit_url, dispose_all
from audit.factory import Audit, open_audit
from audit.queries import subject_indexes
from audit.service import Filters
from cli.main import app
from exchange.auditing import AuditRecord
from exchange.db import alembic_config, make_engine, migrate, session_factory
from exchange.settings import Settings
from tests.integration.test_registry_postgres import pg_url  # noqa: F401 - the cluster fixture

BEFORE = "7c1d2e3f4a5b"  # the audit branch before the bucketed subject table
N0, N1 = 200, 220  # events before the migration, after the appends that follow it


def _subjects(i: int) -> tuple[str, ...]:
    if i % 10 == 9:  # a delivery page: many subjects, one of them in every such event
        return ("everyone", *(f"page{i}-{k}" for k in range(499)))
    return tuple(f"person-{(i + k) % 7}" for k in range(i % 3))


def _records(lo: int, hi: int) -> list[AuditRecord]:
    return [
        AuditRecord("records.delivered", actor="c", data={"i": i}, subjects=_subjects(i))
        for i in range(lo, hi)
    ]


def _expected(subject: str, n: int) -> list[int]:
    return [i for i in range(n) if subject in _subjects(i)]


def _open(settings: Settings, engine: Engine) -> Audit:
    return open_audit(settings, session_factory(engine), None, announce=False)


def _upgrade_an_old_log(settings: Settings) -> tuple[Engine, Audit]:
    """A log written, its audit database taken back to the old layout and upgraded again;
    the engine on the audit database (its own file on SQLite) and the log reopened."""
    control = make_engine(settings.sqlalchemy_url)
    migrate(control)
    audit = _open(settings, control)
    audit.log.append_many(_records(0, N0))  # 20 x 500 subjects: over 8192 rows
    dispose_all()
    url = audit_url(settings)
    cfg = alembic_config(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, BEFORE)
    old = inspect(engine)
    assert {c["name"] for c in old.get_columns("audit_subjects")} == {"subject", "idx"}
    assert old.get_pk_constraint("audit_subjects")["constrained_columns"] == ["subject", "idx"]
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "audit@head")
    new = inspect(engine)
    assert new.get_pk_constraint("audit_subjects")["constrained_columns"] == [
        "bucket",
        "subject",
        "idx",
    ]
    return engine, _open(settings, control)


def _check(engine: Engine, audit: Audit) -> None:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT bucket, subject, idx FROM audit_subjects")).all()
        head = conn.execute(text("SELECT subject_bucket, subject_rows FROM audit_head")).one()
    assert len(rows) == 20 * 500 + sum(i % 3 for i in range(N0) if i % 10 != 9)
    assert {(x, i) for _, x, i in rows} == {(x, i) for i in range(N0) for x in _hashed(audit, i)}
    assert sorted({b for b, _, _ in rows}) == [0, 1]  # 8192 rows to a bucket, in index order
    assert tuple(head) == (2, 0)  # the append goes on in a fresh bucket
    for subject in ("everyone", "person-3", "page19-7", "nobody"):
        got = [e.index for e in audit.service.query(Filters(subject=subject), limit=1000)]
        assert got == _expected(subject, N0), subject
    audit.log.append_many(_records(N0, N1))
    for subject in ("everyone", "person-3", "page209-0", "nobody"):
        got = [e.index for e in audit.service.query(Filters(subject=subject), limit=1000)]
        assert got == _expected(subject, N1), subject
    with engine.connect() as conn:
        buckets = conn.execute(text("SELECT DISTINCT bucket FROM audit_subjects")).scalars()
        assert sorted(buckets) == [0, 1, 2]
    report = audit.service.verify("db")
    assert report.ok and report.size == N1, report.line()


def _hashed(audit: Audit, i: int) -> set[str]:
    return {audit.log.subjects(x) for x in _subjects(i)}


def test_sqlite_log_upgrades_queries_and_verifies(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    settings = Settings(home=home)
    engine, audit = _upgrade_an_old_log(settings)
    _check(engine, audit)
    engine.dispose()
    dispose_all()
    r = CliRunner().invoke(
        app, ["audit", "verify", "--offline", "--home", str(home)], env={"EXCHANGE_HOME": str(home)}
    )
    assert r.exit_code == 0 and f"ok: {N1} events" in r.stdout, r.output


@pytest.mark.slow
def test_postgresql_log_upgrades_queries_and_verifies(
    pg_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    engine, audit = _upgrade_an_old_log(Settings(home=home, database_url=pg_url))
    _check(engine, audit)
    with engine.connect() as conn:  # the key's constraint has the table's name again
        names = conn.execute(
            text("SELECT conname FROM pg_constraint WHERE conrelid = 'audit_subjects'::regclass")
        ).scalars()
        assert list(names) == ["audit_subjects_pkey"]
    # The plan at a realistic size (on 11,000 rows a sequential scan is cheaper, and PostgreSQL
    # rightly takes it): 400,000 more rows in 50 more buckets, in a transaction rolled back.
    with engine.connect() as conn, conn.begin() as tx:
        conn.execute(
            text(
                "INSERT INTO audit_subjects (bucket, subject, idx) SELECT 2 + n / 8192, "
                "md5(n::text) || md5((n + 1)::text), 100000 + n / 2 "
                "FROM generate_series(0, 399999) AS n"
            )
        )
        conn.execute(text("ANALYZE audit_subjects"))
        q = subject_indexes("ab" * 32).compile(engine, compile_kwargs={"literal_binds": True})
        plan = "\n".join(conn.execute(text(f"EXPLAIN {q}")).scalars())
        tx.rollback()
    assert "Seq Scan" not in plan, plan  # a seek per bucket step and per bucket, as on SQLite
    assert "Index Cond: ((bucket = buckets.b) AND (subject = " in plan, plan
    engine.dispose()
    dispose_all()

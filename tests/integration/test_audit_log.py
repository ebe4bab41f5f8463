"""The audit log over a real database (and a real broker where it matters): concurrent
writers, fail-closed appends, pruning that keeps the log verifiable, CLI query/checkpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from audit.events import now_ts
from audit.factory import Audit, open_audit
from audit.merkle import SHA256
from audit.models import AuditEventRow
from audit.offline import verify_exported
from audit.service import Checkpointer, Filters
from audit.settings import AuditSettings
from audit.store import AuditLog, EventBus
from cli.main import app
from exchange.auditing import AuditRecord
from exchange.db import make_engine, migrate, session_factory, transaction
from exchange.errors import ConfigurationError, DependencyUnavailable
from exchange.kafka import open_kafka
from exchange.settings import Settings


def rec(i: int, subject: str | None = None) -> AuditRecord:
    return AuditRecord(
        "records.delivered",
        actor=f"client-{i % 3}",
        department="health",
        topic="health.visits",
        data={"i": i},
        subjects=(subject,) if subject else (),
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def index_only(home: Path) -> Audit:
    settings = Settings(home=home)
    home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    return open_audit(settings, session_factory(engine), None)


def test_two_writers_over_one_database_never_gap_or_duplicate(home: Path) -> None:
    """Two logs (as two gateway processes would be) and eight threads append at once."""
    a, b = index_only(home), index_only(home)

    def work(log: AuditLog, base: int) -> None:
        for i in range(25):
            log.append(rec(base + i))
        log.append_many([rec(base + 100 + i) for i in range(10)])

    threads = [
        threading.Thread(target=work, args=(log, n * 1000))
        for n, log in enumerate([a.log, b.log] * 4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with transaction(a.log.sessions) as s:
        idx = list(s.scalars(select(AuditEventRow.idx).order_by(AuditEventRow.idx)))
    assert idx == list(range(8 * 35))
    a.service.checkpoint()
    report = b.service.verify("db")
    assert report.ok and report.size == 8 * 35, report.line()


@pytest.mark.slow  # the client gives up on an unreachable broker only after ~30 s
def test_append_fails_closed_when_kafka_is_down(home: Path) -> None:
    good = index_only(home)
    down = open_kafka("127.0.0.1:9", "audit-down", request_timeout_ms=1500)
    log = AuditLog(good.log.sessions, EventBus(down, "_exchange.audit"), SHA256, good.log.subjects)
    with pytest.raises(DependencyUnavailable):
        log.append(rec(1))
    with transaction(good.log.sessions) as s:
        assert s.scalar(select(func.count()).select_from(AuditEventRow)) == 0
    down.close()


def test_pruning_keeps_the_rest_verifiable(home: Path) -> None:
    audit = index_only(home)
    long_ago = datetime.now(UTC) - timedelta(days=400)
    old_clock = lambda: long_ago.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
    audit.log.clock = old_clock
    audit.log.append_many([rec(i) for i in range(13)])
    audit.service.checkpoint()
    audit.log.append_many([rec(i) for i in range(13, 20)])
    audit.log.clock = now_ts
    audit.log.append_many([rec(i) for i in range(20, 30)])
    first = audit.service.checkpoint()
    # Only events older than 180 days AND covered by a checkpoint go: 0..19.
    assert audit.service.prune() == 20
    report = audit.service.verify("db")
    assert report.ok and report.size == 30 and report.checkpoints == 2, report.line()
    proof = audit.service.inclusion(25, first.size)
    entry = audit.service.query(Filters(), after=24, limit=1)[0]
    assert verify_exported(
        entry.canonical().decode(),
        25,
        proof["proof"],
        first.note,
        audit.service.signer.verifier.encode(),
    )
    assert audit.service.prune() == 20  # idempotent


def test_retention_below_180_days_is_refused() -> None:
    with pytest.raises(ValueError):
        AuditSettings(retention_days=30)


@pytest.fixture
def cli_home(home: Path) -> Iterator[Path]:
    audit = index_only(home)
    audit.log.append_many([rec(i, subject=f"person-{i % 4}") for i in range(12)])
    yield home


def test_cli_offline_verify_is_labelled_and_read_only(cli_home: Path, tmp_path: Path) -> None:
    """Through the gateway is the default (tests/e2e/test_cli_journey.py); --offline reads the
    home's storage directly, says so, and writes nothing into the log it examines."""
    runner = CliRunner()
    env = {"EXCHANGE_HOME": str(cli_home)}
    out = tmp_path / "cp.txt"
    out.write_text(index_only(cli_home).service.checkpoint().note)
    r = runner.invoke(
        app,
        ["audit", "verify", "--offline", "--home", str(cli_home), "--from-checkpoint", str(out)],
        env=env,
    )
    assert r.exit_code == 0 and "ok: 12 events" in r.stdout, r.output
    assert "offline: reading the database of this home directly" in r.stderr
    assert len(index_only(cli_home).service.query(Filters(), limit=1000)) == 12
    nowhere = tmp_path / "not-a-home"
    r = runner.invoke(app, ["audit", "verify", "--offline", "--home", str(nowhere)], env=env)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"no exchange home at {nowhere} (looked for {nowhere / 'exchange.db'})" in r.stderr


def test_sm3_log_verifies_and_its_hash_is_fixed_for_life(home: Path) -> None:
    home.mkdir(parents=True)
    settings = Settings(home=home)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    sm3 = open_audit(settings, session_factory(engine), None, AuditSettings(hash="sm3"))
    sm3.log.append_many([rec(i) for i in range(9)])
    cp = sm3.service.checkpoint()
    assert "exchange-audit 1 sm3" in cp.note
    report = sm3.service.verify("db")
    assert report.ok and report.size == 9, report.line()
    with pytest.raises(ConfigurationError):
        open_audit(settings, session_factory(engine), None, AuditSettings(hash="sha256"))


def test_ticker_signs_checkpoints_while_the_log_grows(home: Path) -> None:
    audit = index_only(home)
    audit.log.append_many([rec(i) for i in range(5)])
    ticker = Checkpointer(audit.service, 0.05).start()
    try:
        deadline = time.monotonic() + 10  # a bound, not a timing assertion
        while (cp := audit.service.latest_checkpoint()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        ticker.stop()
    assert cp is not None and cp.size == 5

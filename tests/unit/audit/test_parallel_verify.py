"""Verification in two processes says "intact" exactly when the one-pass walk does, and
otherwise leaves the report (which index, which kind) to the walk.

A real index-only log in a SQLite file, tampered with plain SQL as an insider would; the
size threshold is lowered so that a few hundred events take the two-process path.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from audit import parallel, sources
from audit.database import dispose_all
from audit.factory import Audit, open_audit
from audit.verify import Report, verify_log
from exchange.auditing import AuditRecord
from exchange.db import make_engine, migrate, session_factory
from exchange.settings import Settings

N = 300
SPARE_CORE = parallel.spare_core
Tamper = Callable[[sqlite3.Connection], object]


def build(home: Path) -> None:
    settings = Settings(home=home)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    audit = open_audit(settings, session_factory(engine), None)
    for k in range(0, N, 50):
        audit.log.append_many(
            [
                AuditRecord("t.x", actor=f"a{i % 4}", data={"i": i}, subjects=(f"p{i % 9}",))
                for i in range(k, k + 50)
            ]
        )
        if k in (50, 200):
            audit.service.checkpoint()
    audit.service.checkpoint()
    engine.dispose()
    dispose_all()


def reopen(home: Path) -> Audit:
    settings = Settings(home=home)
    return open_audit(settings, session_factory(make_engine(settings.sqlalchemy_url)), None)


def one_pass(a: Audit) -> Report:
    size, anchor = sources.head(a.log.sessions)
    return verify_log(
        a.log.h,
        sources.db_entries(a.log.sessions),
        checkpoints=sources.checkpoint_notes(a.log.sessions),
        verifier=a.service.signer.verifier,
        origin=a.settings.origin,
        anchor=anchor,
        expected_size=size,
    )


def two_halves(a: Audit) -> Report | None:
    size, anchor = sources.head(a.log.sessions)
    return parallel.verify_db(
        a.log.sessions,
        a.log.h.name,
        size,
        anchor,
        checkpoints=sources.checkpoint_notes(a.log.sessions),
        verifier=a.service.signer.verifier,
        origin=a.settings.origin,
        trusted=[],
        labels=None,
    )


def entry_of(db: sqlite3.Connection, idx: int) -> bytes:
    row = db.execute("SELECT entry FROM audit_events WHERE idx = ?", (idx,)).fetchone()
    return bytes(row[0])


def swap(db: sqlite3.Connection, a: int, b: int) -> None:
    ea, eb = entry_of(db, a), entry_of(db, b)
    db.execute("UPDATE audit_events SET entry = ? WHERE idx = ?", (eb, a))
    db.execute("UPDATE audit_events SET entry = ? WHERE idx = ?", (ea, b))


CASES: dict[str, Tamper] = {
    "entry in the first half": lambda db: db.execute(
        "UPDATE audit_events SET entry = replace(entry, '\"i\":40', '\"i\":41') WHERE idx = 40"
    ),
    "column in the second half": lambda db: db.execute(
        "UPDATE audit_events SET actor = 'someone' WHERE idx = 250"
    ),
    "deleted in the first half": lambda db: db.execute("DELETE FROM audit_events WHERE idx = 7"),
    "swapped across the halves": lambda db: swap(db, 120, 180),
    "tail cut": lambda db: db.execute("DELETE FROM audit_events WHERE idx >= 290"),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("audit-parallel")
    build(home)
    return home


@pytest.fixture(autouse=True)
def small_logs_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 10)
    monkeypatch.setattr(parallel, "spare_core", lambda: True)  # whatever else runs here


def test_a_busy_machine_verifies_in_one_pass(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (1.5, 0.5, 0.5))
    assert SPARE_CORE()  # this process and half a core of others' work
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (3.0, 0.5, 0.5))
    assert not SPARE_CORE()
    monkeypatch.setattr(parallel, "spare_core", SPARE_CORE)
    a = reopen(built)
    assert two_halves(a) is None  # no child started: the caller walks in one pass
    assert a.service.verify("db") == one_pass(a)
    dispose_all()


def test_intact_log_gets_the_one_pass_report(built: Path) -> None:
    a = reopen(built)
    want = one_pass(a)
    assert want.ok and want.size == N and want.checkpoints == 3
    assert two_halves(a) == want
    assert a.service.verify("db") == want
    dispose_all()


@pytest.mark.parametrize("case", sorted(CASES))
def test_tampering_is_left_to_the_one_pass_walk(case: str, built: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(built, home)
    db = sqlite3.connect(home / "audit.db", isolation_level=None)
    CASES[case](db)
    db.close()
    a = reopen(home)
    want = one_pass(a)
    assert not want.ok
    assert two_halves(a) is None  # and so the service reports what the walk says:
    assert a.service.verify("db") == want
    dispose_all()


def test_a_child_that_cannot_run_falls_back_to_the_walk(
    built: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    a = reopen(built)
    want = one_pass(a)
    # The child cannot open this database (its folder does not exist): it exits non-zero.
    monkeypatch.setattr(parallel, "_url", lambda _: f"sqlite:///{tmp_path / 'no' / 'a.db'}")
    assert two_halves(a) is None
    assert a.service.verify("db") == want
    dispose_all()


def test_rows_from_the_driver_cursor_are_what_sqlalchemy_gives(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``db_entries`` reads on the driver's own cursor; a driver with named placeholders goes
    through SQLAlchemy instead. Both give the same entries, an edited row's odd types too."""
    home = tmp_path / "home"
    shutil.copytree(built, home)
    db = sqlite3.connect(home / "audit.db", isolation_level=None)
    db.execute(
        "UPDATE audit_events SET entry = CAST(entry AS TEXT), actor = X'00ff' WHERE idx = 12"
    )
    db.execute("DELETE FROM audit_subjects WHERE idx = 13")
    db.close()
    a = reopen(home)
    fast = list(sources.db_entries(a.log.sessions, after=5, before=290))
    monkeypatch.setattr(sources, "_MARKS", {})
    monkeypatch.setattr(sources, "CHUNK", 7)
    general = list(sources.db_entries(a.log.sessions, after=5, before=290))
    assert fast == general and len(fast) == 284
    assert fast[6].view is not None and fast[6].view[2] == b"\x00\xff" and fast[7].view[-1] == ()
    dispose_all()

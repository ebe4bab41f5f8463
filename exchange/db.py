"""Control-plane database: one SQLAlchemy engine, one declarative base, Alembic migrations.

Every package keeps its tables on :class:`Base` and its migrations in its own Alembic branch
(``<package>/migrations``); :func:`migrate` upgrades all branches to their heads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import namedtuple
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Boolean,
    DateTime,
    Dialect,
    Engine,
    Integer,
    Select,
    TypeDecorator,
    create_engine,
    event,
    text,
)
from sqlalchemy.exc import SQLAlchemyError, StatementError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql import Executable

from exchange.errors import DependencyUnavailable, InvalidInput

_ROOT = Path(__file__).resolve().parent.parent
# Each entry owns one Alembic branch (label = last path part) in ``<dir>/migrations/versions``.
MIGRATION_DIRS = (
    "exchange",
    "exchange/crypto",
    "dataplane",
    "exchange/identity",
    "schemas",
    "consent",
    "audit",
)


_UNSTORABLE = (OverflowError, UnicodeEncodeError)
SQLITE_POOL = 40  # connections kept to a SQLite file: AnyIO's default thread pool size


class Base(DeclarativeBase):
    """Declarative base for every control-plane table."""


class UtcDateTime(TypeDecorator[datetime]):
    """An instant, stored in UTC and read back timezone-aware on every database.

    SQLite has no time-zone type: it stores the wall time and returns it naive, so an API
    would print ``created_at`` without an offset, and an aware value in another zone would be
    stored wrongly. Every table's timestamps use this type instead of ``DateTime``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # the code base writes UTC; a naive value is taken as UTC
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def make_engine(url: str, *, relaxed_sync: bool = False) -> Engine:
    """An engine for ``url``. SQLite connections commit with ``synchronous=FULL`` (each commit
    fsyncs the WAL); ``relaxed_sync`` gives an engine whose every connection runs
    ``synchronous=NORMAL`` instead (no fsync per commit: a machine crash may lose the last
    commits). Only for writes whose durable copy is elsewhere (the audit appender,
    :mod:`audit.store`); its connections are never handed to anyone else."""
    # hide_parameters: bound values (secrets, record data) stay out of logs and error texts.
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if ":memory:" not in url and url.rstrip("/") != "sqlite:":
            # A file: no server to lose a connection to, so no ping (a SELECT 1 per checkout),
            # and as many kept connections as the thread pool has threads (40): with the
            # default 5, concurrent requests opened and closed one (open, WAL and pragmas)
            # per checkout beyond the fifth.
            kwargs |= {"pool_pre_ping": False, "pool_size": SQLITE_POOL, "max_overflow": 10}
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _relaxed_pragmas if relaxed_sync else _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object, sync: str = "FULL") -> None:
    # WAL lets the gateway read while a writer holds the lock; FKs are off by default in SQLite.
    # The safety level is per connection, and SQLite refuses to change it inside a transaction:
    # it is set here, once, before the connection's first transaction.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA synchronous={sync}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _relaxed_pragmas(dbapi_conn: sqlite3.Connection, record: object) -> None:
    _sqlite_pragmas(dbapi_conn, record, "NORMAL")
    # A bulk writer: pages of its indexes stay in a larger cache instead of being read back
    # from the OS at every batch, and it checkpoints the WAL every ~40 MiB instead of every
    # ~4 MiB (a page rewritten by several commits in between is copied back once).
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA cache_size=-32768")
    cur.execute("PRAGMA wal_autocheckpoint=10000")
    cur.close()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_ROOT / "exchange" / "migrations"))
    locations = [
        str(p) for pkg in MIGRATION_DIRS if (p := _ROOT / pkg / "migrations" / "versions").is_dir()
    ]
    cfg.set_main_option("version_locations", " ".join(locations))
    cfg.set_main_option("path_separator", "space")
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision of every package branch."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


_relaxed_engines: dict[str, Engine] = {}
_relaxed_lock = threading.Lock()


def relaxed_sessions(sessions: sessionmaker[Session]) -> tuple[sessionmaker[Session], bool]:
    """Sessions for writes that may be lost in a machine crash (never in a process crash),
    and whether their transactions must ask for it themselves (``relaxed_commit``): on a
    SQLite file a second engine on the same file whose connections run
    ``synchronous=NORMAL`` and serve only these writes (SQLite keeps the level per
    connection); on PostgreSQL the same sessions, each transaction asking for
    ``synchronous_commit = off``; otherwise (in-memory SQLite) as given. Such a commit is
    flushed by the next full commit of anyone, or at the next WAL checkpoint."""
    engine = sessions.kw.get("bind")
    if not isinstance(engine, Engine):
        return sessions, False
    backend = engine.url.get_backend_name()
    if backend == "postgresql":
        return sessions, True
    if backend != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return sessions, False
    url = engine.url.render_as_string(hide_password=False)
    with _relaxed_lock:
        relaxed = _relaxed_engines.get(url)
        if relaxed is None:
            relaxed = _relaxed_engines[url] = make_engine(url, relaxed_sync=True)
    return session_factory(relaxed), False


def forget_relaxed(url: str) -> None:
    """Close and forget the relaxed engine of ``url`` (made by :func:`relaxed_sessions`), if any."""
    with _relaxed_lock:
        engine = _relaxed_engines.pop(url, None)
    if engine is not None:
        engine.dispose()


def relaxed_commit(session: Session) -> None:
    """In a transaction of :func:`relaxed_sessions` that asks for it (PostgreSQL): commit
    without waiting for the log flush (ends with the transaction)."""
    session.execute(text("SET LOCAL synchronous_commit = off"))


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on error, DB failures → 503."""
    session = factory()
    try:
        yield session
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        if isinstance(exc, StatementError) and isinstance(exc.orig, _UNSTORABLE):
            # a value that cannot be bound (a date beyond year 9999 in UTC, a huge integer):
            # the caller's input, not an outage
            raise InvalidInput(
                "a value in the request cannot be stored: out of range or not valid text"
            ) from None
        raise DependencyUnavailable("control-plane database unavailable") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def read_first(
    factory: sessionmaker[Session], statement: Executable, params: dict[str, Any]
) -> Any:
    """The first row of a read-only ``statement`` (None if none), on a pooled connection of
    the factory's engine without an ORM session, with SQLAlchemy's column types applied (JSON,
    dates): for reads made on every request, where the session's own bookkeeping cost more
    than the query (~100 vs ~40 µs on SQLite). :class:`FirstRow` is cheaper still for Boolean
    and Integer columns. A database failure is a 503, as in :func:`transaction`."""
    engine: Engine = factory.kw["bind"]
    try:
        with engine.connect() as conn:
            return conn.execute(statement, params).first()
    except SQLAlchemyError as exc:
        raise DependencyUnavailable("control-plane database unavailable") from exc


class FirstRow:
    """A read-only query for checks made on every request (a token's liveness): compiled once
    per engine and run on a pooled DBAPI connection, without an ORM session or SQLAlchemy's
    per-execution work (cache key, execution context, result object), which cost more than
    the query itself (52 vs 19 µs on SQLite). :meth:`first` gives the first row (None if none)
    with its columns as attributes, as the driver returns them: only Boolean and Integer
    columns are allowed, where a driver's 0/1 and SQLAlchemy's bool test and compare alike. A
    database failure is a 503, as in :func:`transaction`."""

    def __init__(self, statement: Select[*tuple[Any, ...]]) -> None:
        columns = list(statement.selected_columns)
        if odd := [c.key for c in columns if not isinstance(c.type, Boolean | Integer)]:
            raise TypeError(f"FirstRow reads Boolean and Integer columns only, not {odd}")
        self.statement = statement
        self.row = namedtuple("row", [c.key for c in columns])  # type: ignore[misc]
        self._compiled: dict[int, tuple[str, list[str] | None]] = {}

    def first(self, factory: sessionmaker[Session], params: dict[str, Any]) -> Any:
        engine: Engine = factory.kw["bind"]
        sql, order = self._compiled.get(id(engine.dialect)) or self._compile(engine)
        args: Any = params if order is None else tuple(params[n] for n in order)
        try:
            conn = engine.raw_connection()  # from the pool; close() gives it back
            try:
                cursor = conn.cursor()
                try:
                    cursor.execute(sql, args)
                    found = cursor.fetchone()
                finally:
                    cursor.close()
            finally:
                conn.close()
        except (SQLAlchemyError, engine.dialect.loaded_dbapi.Error) as exc:
            raise DependencyUnavailable("control-plane database unavailable") from exc
        return None if found is None else self.row(*found)

    def _compile(self, engine: Engine) -> tuple[str, list[str] | None]:
        compiled = self.statement.compile(dialect=engine.dialect)
        order = list(compiled.positiontup or ()) if compiled.positional else None
        self._compiled[id(engine.dialect)] = (compiled.string, order)
        return compiled.string, order


def ping(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except SQLAlchemyError:
        return False

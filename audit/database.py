"""Where the audit index lives.

On PostgreSQL: the control-plane database itself (the head row lock blocks no one else). On
SQLite, which has one writer per file, in its own file ``audit.db`` next to it: packages append
audit events inside their own open write transactions, and a second writer on the same file
would wait for that very transaction to end (a self-deadlock until the busy timeout).

A Kafka-backed log commits its appends without waiting for the disk (see :mod:`audit.store`):
:func:`exchange.db.relaxed_sessions` gives the appender its own sessions for that (on SQLite a
second engine on the file whose connections all run ``synchronous=NORMAL``; on PostgreSQL
``SET LOCAL synchronous_commit = off`` per transaction), so no other writer of the file ever
commits that way.
"""

from __future__ import annotations

import threading

from alembic import command
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from exchange.db import alembic_config, forget_relaxed, make_engine, session_factory
from exchange.settings import Settings

AUDIT_DB = "audit.db"
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def audit_url(settings: Settings) -> str:
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        return f"sqlite:///{settings.resolved_home / AUDIT_DB}"
    return url


def audit_sessions(settings: Settings, shared: sessionmaker[Session]) -> sessionmaker[Session]:
    """The control-plane sessions on PostgreSQL, else sessions on the migrated audit file."""
    url = audit_url(settings)
    if url == settings.sqlalchemy_url:
        return shared
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = make_engine(url)
            migrate_audit(engine)
            _engines[url] = engine
    return session_factory(engine)


def migrate_audit(engine: Engine) -> None:
    """Only the audit branch: this file holds no other package's tables."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "audit@head")


def dispose_all() -> None:
    with _lock:
        for url, engine in _engines.items():
            forget_relaxed(url)
            engine.dispose()
        _engines.clear()

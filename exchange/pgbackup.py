"""A PostgreSQL control plane in a backup: ``pg_dump --format=custom`` and ``pg_restore``.

The dump runs on a snapshot exported from a REPEATABLE READ transaction
(``pg_export_snapshot()`` → ``pg_dump --snapshot``): the caller reads what it needs (the audit
log's size) in that same transaction, so the manifest and the dump describe one instant. The
password goes to the client programs through ``PGPASSWORD`` in their environment, never on
their command line; the rest of the URL is passed as a libpq connection URI.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import URL, Connection, create_engine, make_url, text
from sqlalchemy.pool import NullPool

from exchange.errors import ConfigurationError, ExchangeError

DUMP = "control-plane.pgdump"
TIMEOUT_S = 3600
T = TypeVar("T")


class PgToolFailed(ExchangeError):
    code = "pg_tool_failed"


def is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).startswith("postgresql")


def binary(name: str) -> Path:
    """``pg_dump``/``pg_restore``: the newest Debian cluster version, else on PATH."""
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", Path(p).parent.parent.name)],
    )
    if found:
        return Path(found[-1])
    which = shutil.which(name)
    if which is None:
        raise ConfigurationError(
            f"{name} not found: install the PostgreSQL client programs (Debian: "
            f"postgresql-client) at least as new as the server"
        )
    return Path(which)


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and the environment carrying it."""
    u = make_url(url)
    env = {"PGPASSWORD": u.password} if u.password else {}
    bare = URL.create("postgresql", u.username, None, u.host, u.port, u.database, u.query)
    dsn = bare.render_as_string(hide_password=False)
    return dsn, env


def _run(args: list[str], url: str, data: bytes | None = None) -> bytes:
    dsn, secret = libpq(url)
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"} | secret
    try:
        done = subprocess.run(
            [*args, "--no-password", f"--dbname={dsn}"],
            input=data,
            env=env,
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PgToolFailed(f"{Path(args[0]).name} took over {TIMEOUT_S} s") from exc
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise PgToolFailed(f"{Path(args[0]).name} failed: {' / '.join(tail)}")
    return done.stdout


def dump(url: str, read: Callable[[Connection], T]) -> tuple[bytes, T]:
    """A custom-format dump of the database and ``read`` run on the very same snapshot."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
                seen = read(conn)
                data = _run(
                    [str(binary("pg_dump")), "--format=custom", f"--snapshot={snapshot}"], url
                )
    finally:
        engine.dispose()
    return data, seen


def user_tables(url: str) -> int:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM information_schema.tables WHERE table_schema "
                        "NOT IN ('pg_catalog', 'information_schema')"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def restore(url: str, data: bytes) -> None:
    """Load a dump in one transaction (all or nothing); objects it holds are replaced."""
    _run(
        [str(binary("pg_restore")), "--clean", "--if-exists", "--no-owner", "--no-acl",
         "--single-transaction", "--exit-on-error"],
        url,
        data,
    )  # fmt: skip

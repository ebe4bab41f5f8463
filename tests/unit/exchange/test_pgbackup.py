"""The PostgreSQL password reaches pg_dump/pg_restore only through PGPASSWORD."""

from __future__ import annotations

from exchange.pgbackup import is_postgres, libpq


def test_password_goes_to_the_environment_not_the_command_line() -> None:
    dsn, env = libpq("postgresql+psycopg://ops:s3cr%40t@db.example:5433/exchange?sslmode=require")
    assert dsn == "postgresql://ops@db.example:5433/exchange?sslmode=require"
    assert env == {"PGPASSWORD": "s3cr@t"}
    assert libpq("postgresql://ops@db/exchange")[1] == {}


def test_only_postgresql_urls_are_dumped() -> None:
    assert is_postgres("postgresql+psycopg://h/db") and not is_postgres("sqlite:///x.db")
    assert not is_postgres(None)

"""Alembic environment: runs on the connection handed in by ``exchange.db.migrate``.

``tools/new_migration.py`` sets ``config.attributes["only_tables"]`` so autogenerate compares
one package's tables only (other branches' tables are neither created nor dropped).
"""

from typing import Any

from alembic import context
from sqlalchemy import create_engine

from exchange.db import Base

target_metadata = Base.metadata
config = context.config
only_tables: set[str] | None = config.attributes.get("only_tables")


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    if only_tables is None:
        return True
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table in only_tables


def run() -> None:
    connection = config.attributes.get("connection")
    opts: dict[str, Any] = {"target_metadata": target_metadata, "include_object": include_object}
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.begin() as conn:
            context.configure(connection=conn, **opts)
            context.run_migrations()
        return
    context.configure(connection=connection, **opts)
    context.run_migrations()


run()

"""Autogenerate an Alembic revision for one package's branch.

usage: python tools/new_migration.py DIR "message" MODULE [MODULE ...]
  DIR: a package dir listed in exchange.db.MIGRATION_DIRS (e.g. schemas, exchange/crypto)
  MODULE: the modules defining that package's tables (e.g. schemas.models)
Only those modules' tables are compared; the scratch DB is first migrated to every head, so
the revision holds just this package's changes. Written to DIR/migrations/versions.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from exchange.db import MIGRATION_DIRS, Base, alembic_config, make_engine, migrate


def main(directory: str, message: str, modules: list[str]) -> None:
    if directory not in MIGRATION_DIRS:
        raise SystemExit(f"{directory} is not in exchange.db.MIGRATION_DIRS")
    own: set[str] = set()
    for name in modules:
        mod = importlib.import_module(name)
        own |= {getattr(v, "__tablename__", "") for v in vars(mod).values()} - {""}
    for table in list(Base.metadata.tables):
        if table not in own:
            Base.metadata.remove(Base.metadata.tables[table])
    versions = Path(directory) / "migrations" / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    label = directory.rsplit("/", 1)[-1]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/scratch.db"
        migrate(make_engine(url))
        cfg = alembic_config(url)
        cfg.attributes["only_tables"] = own
        script = ScriptDirectory.from_config(cfg)
        mine = [
            h
            for h in script.get_heads()
            if Path(script.get_revision(h).path).parent.resolve() == versions.resolve()
        ]
        if mine:
            command.revision(
                cfg, message, autogenerate=True, head=mine[0], version_path=str(versions)
            )
        else:
            command.revision(
                cfg,
                message,
                autogenerate=True,
                head="base",
                branch_label=label,
                version_path=str(versions),
            )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])

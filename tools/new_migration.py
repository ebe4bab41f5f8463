"""Autogenerate an Alembic revision for one package's branch.

usage: python tools/new_migration.py PACKAGE "message"   (PACKAGE: exchange|schemas|consent|audit)
It imports only that package's models, migrates a scratch SQLite DB to every head first, and
writes the new revision into ``PACKAGE/migrations/versions``.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from exchange.db import Base, alembic_config, make_engine, migrate

MODELS = {
    "exchange": ["exchange.identity.models", "exchange.gatewaystate.models"],
    "schemas": ["schemas.models"],
    "consent": ["consent.models"],
    "audit": ["audit.models"],
}


def main(package: str, message: str) -> None:
    for mod in MODELS[package]:
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(mod)
    # Compare only this package's tables: drop the others from the metadata view.
    own = {t for t in Base.metadata.tables if any(t in _tables(m) for m in MODELS[package])}
    for name in list(Base.metadata.tables):
        if name not in own:
            Base.metadata.remove(Base.metadata.tables[name])
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/scratch.db"
        engine = make_engine(url)
        versions = Path(package) / "migrations" / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        cfg = alembic_config(url)
        if any(versions.glob("*.py")):
            migrate(engine)
            heads = ScriptDirectory.from_config(cfg).get_heads()
            head = next(
                h
                for h in heads
                if str(versions) in ScriptDirectory.from_config(cfg).get_revision(h).path
            )  # type: ignore[union-attr]
            command.revision(cfg, message, autogenerate=True, head=head, version_path=str(versions))
        else:
            migrate(engine)
            command.revision(
                cfg,
                message,
                autogenerate=True,
                head="base",
                branch_label=package,
                version_path=str(versions),
            )


def _tables(module: str) -> set[str]:
    try:
        mod = sys.modules[module]
    except KeyError:
        return set()
    return {getattr(v, "__tablename__", "") for v in vars(mod).values()} - {""}


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

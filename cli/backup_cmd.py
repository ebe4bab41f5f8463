"""``exchange backup --to DIR`` and ``exchange restore --from DIR`` (see exchange/backup.py)."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from cli.common import HomeOption, console, guarded, settings_for
from exchange.errors import ConfigurationError

PASSPHRASE_ENV = "EXCHANGE_BACKUP_PASSPHRASE"  # noqa: S105 - a variable name


def _passphrase(confirm: bool) -> str:
    given = os.environ.get(PASSPHRASE_ENV)
    if given:
        return given
    return str(typer.prompt("Backup passphrase", hide_input=True, confirmation_prompt=confirm))


def _audit_head(db: Path) -> tuple[int, str]:
    from exchange.db import make_engine, migrate, session_factory

    engine = make_engine(f"sqlite:///{db}")
    try:
        migrate(engine)  # a copy of an older version's database reads like today's
        return _head_of(session_factory(engine))
    finally:
        engine.dispose()


def _head_of(sessions: sessionmaker[Session]) -> tuple[int, str]:
    from audit.sources import head, log_id

    return head(sessions)[0], log_id(sessions)


def _sign_head(settings: object) -> int | None:
    """Sign a checkpoint of the audit log's head now (or find the one already signed for
    it), so the backup carries a signed checkpoint of what it holds, not one up to a
    checkpoint interval old; its size, or None for a home with no audit log or signer yet.
    Safe beside a running gateway: a checkpoint is one row per size, signed once."""
    from audit.factory import open_audit
    from audit.keys import SIGNING_KEY_FILE
    from audit.settings import AuditSettings
    from exchange.db import make_engine, session_factory
    from exchange.pgbackup import is_postgres
    from exchange.settings import Settings

    assert isinstance(settings, Settings)
    home, a = settings.resolved_home, AuditSettings()
    url = settings.database_url
    has_db = bool(url and is_postgres(url)) or (home / "exchange.db").exists()
    if not has_db or (a.signing_key is None and not (home / SIGNING_KEY_FILE).exists()):
        return None
    engine = make_engine(settings.sqlalchemy_url)
    try:
        audit = open_audit(settings, session_factory(engine), None, a, announce=False)
        return audit.service.checkpoint().size
    finally:
        engine.dispose()


def _audit_head_pg(conn: Connection) -> tuple[int, str]:
    """Read inside the dump's snapshot transaction (the session joins it, commits nothing)."""
    return _head_of(sessionmaker(bind=conn, expire_on_commit=False))


@guarded
def backup(
    to: Path = typer.Option(..., "--to", help="New or empty directory for the backup"),
    home: Path | None = HomeOption,
    shares: int = typer.Option(
        0, "--shares", help="Split a random recovery key into N Shamir shares (no passphrase)"
    ),
    threshold: int = typer.Option(0, "--threshold", help="Shares needed to restore (k of N)"),
) -> None:
    """Encrypted snapshot of the control plane and keys (the gateway may keep running)."""
    from exchange.backup import Protection, create
    from exchange.pgbackup import is_postgres

    settings = settings_for(home)
    url = settings.database_url
    if url and not url.startswith("sqlite") and not is_postgres(url):
        raise ConfigurationError("`exchange backup` covers SQLite and PostgreSQL control planes")
    if shares or threshold:
        protection = Protection(shares=shares, threshold=threshold)
    else:
        protection = Protection(passphrase=_passphrase(confirm=True))
    postgres = (url, _audit_head_pg) if url and is_postgres(url) else None
    signed = _sign_head(settings)
    manifest, handed = create(
        settings.resolved_home, to, protection, _audit_head, postgres=postgres
    )
    if handed:
        console.print(
            f"recovery key split into {shares} shares, any {threshold} restore this backup; "
            "hand one to each custodian (they are shown once and stored nowhere):",
            highlight=False,
        )
        for share in handed:
            console.print(f"  {share}", highlight=False)
    at = "" if signed is None else f", checkpoint signed at {signed}"
    console.print(
        f"backup {manifest['backup_id']}: {len(manifest['files'])} files, audit log at "
        f"{manifest['audit']['size']} events{at} -> {to}",
        highlight=False,
    )


def _topic_size(settings: object, log_id: str) -> int:
    """Events of this audit log the Kafka topic holds (the broker of this home is started
    for the count if it is embedded and not running)."""
    from audit.settings import AuditSettings
    from audit.sources import kafka_entries
    from exchange.errors import NotFound
    from exchange.kafka import open_kafka
    from exchange.kafka.broker import LocalBroker
    from exchange.settings import Settings

    assert isinstance(settings, Settings)
    started = None
    bootstrap = settings.kafka_bootstrap
    if not bootstrap:
        broker = LocalBroker(settings.resolved_home)
        running = broker.state()
        if running is None:
            running, started = broker.start(), broker
        bootstrap = running.bootstrap
    kafka = open_kafka(bootstrap, "exchange-restore", settings.kafka_client,
                       security=settings.kafka_security())  # fmt: skip
    try:
        return sum(1 for _ in kafka_entries(kafka, AuditSettings().topic, log_id))
    except NotFound:
        return 0
    finally:
        kafka.close()
        if started is not None:
            started.stop()


@guarded
def restore(
    src: Path = typer.Option(..., "--from", help="A directory written by `exchange backup`"),
    home: Path | None = HomeOption,
    allow_stale: bool = typer.Option(
        False, "--allow-stale", help="Restore although the audit topic holds newer events"
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing home's files"),
    share: list[str] = typer.Option(
        [], "--share", help="A recovery share (repeat for each; for a split-key backup)"
    ),
) -> None:
    """Restore a backup onto a (fresh) home; refuses a stale one unless --allow-stale."""
    from exchange import pgbackup
    from exchange.backup import BackupRefused, install, open_backup, read_manifest, stale

    settings = settings_for(home)
    if read_manifest(src)["kdf"]["name"] == "shamir":
        manifest, contents = open_backup(src, shares=share)
    else:
        manifest, contents = open_backup(src, passphrase=_passphrase(confirm=False))
    url = settings.database_url
    dumped = contents.pop(pgbackup.DUMP, None)
    if (dumped is not None) != pgbackup.is_postgres(url):
        raise BackupRefused(
            f"this backup holds a {manifest.get('control_plane', 'sqlite')} control plane and "
            f"the target's is {'postgresql' if pgbackup.is_postgres(url) else 'sqlite'}: set "
            "EXCHANGE_DATABASE_URL to match"
        )
    if url and dumped is not None and not force and pgbackup.user_tables(url):
        raise BackupRefused(
            "the target PostgreSQL database is not empty: restore into a new database, or "
            "pass --force to replace what the backup holds"
        )
    target = settings.resolved_home
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    installed = install(target, contents, force=force)
    size = _topic_size(settings, str(manifest["audit"]["log_id"]))
    try:
        if stale(manifest, size) and not allow_stale:
            raise BackupRefused(
                f"stale backup: the audit topic holds {size} events of this log, the backup "
                f"knows {manifest['audit']['size']}; what happened after it (keys, agreements) "
                "would be lost. Restore a newer backup, or pass --allow-stale to accept that"
            )
        if url and dumped is not None:
            pgbackup.restore(url, dumped)  # one transaction: all or nothing
    except BaseException:
        installed.rollback()  # the home is as it was before, keys included
        raise
    installed.commit()
    console.print(
        f"restored backup {manifest['backup_id']} ({manifest['created_at']}) into {target}: "
        f"{len(installed.written)} files; audit topic {size} events, "
        f"backup {manifest['audit']['size']}",
        highlight=False,
    )

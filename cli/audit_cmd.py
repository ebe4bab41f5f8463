"""``exchange audit verify|checkpoint|query|prune``: the security officer's tools."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.common import HomeOption, console, err_console, guarded, settings_for
from exchange.errors import ConfigurationError, InvalidInput

if TYPE_CHECKING:
    from audit.factory import Audit

app = typer.Typer(help="Tamper-evident audit log: verify, checkpoint, query.", no_args_is_help=True)


def _open(home: Path | None, topic: str | None = None, kafka: bool = False) -> Audit:
    from audit.factory import open_audit
    from audit.settings import AuditSettings
    from exchange.db import make_engine, migrate, session_factory
    from exchange.kafka import open_kafka

    settings = settings_for(home)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    a = AuditSettings()
    if topic:
        a = a.model_copy(update={"topic": topic})
    audit = open_audit(settings, session_factory(engine), None, a)
    if kafka:
        audit.service.kafka = open_kafka(
            _bootstrap(settings),
            "exchange-audit-cli",
            settings.kafka_client,
            security=settings.kafka_security(),
        )
    return audit


def _bootstrap(settings: object) -> str:
    from exchange.kafka.broker import LocalBroker
    from exchange.settings import Settings

    assert isinstance(settings, Settings)
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    state = LocalBroker(settings.resolved_home).state()
    if state is None:
        raise ConfigurationError("no Kafka: set EXCHANGE_KAFKA_BOOTSTRAP or start the broker")
    return state.bootstrap


def _read_key(key: str | None) -> object:
    from audit.checkpoint import Verifier

    if key is None:
        return None
    path = Path(key)
    return Verifier.parse(path.read_text() if path.exists() else key)


@app.command()
@guarded
def verify(
    home: Path | None = HomeOption,
    source: str = typer.Option("db", "--source", help="db (the index) or kafka (the topic)"),
    from_checkpoint: Path | None = typer.Option(
        None, "--from-checkpoint", help="A signed checkpoint saved earlier; the log must extend it"
    ),
    key: str | None = typer.Option(
        None, "--key", help="Verifier key (or a file holding it); default: this home's"
    ),
    topic: str | None = typer.Option(None, "--topic", help="Audit topic (default from settings)"),
) -> None:
    """Recompute the Merkle tree from stored events; name the first tampered index."""
    from audit.checkpoint import Verifier

    if source not in ("db", "kafka"):
        raise InvalidInput("--source must be db or kafka")
    audit = _open(home, topic, kafka=source == "kafka")
    trusted = [from_checkpoint.read_text()] if from_checkpoint else []
    verifier = _read_key(key)
    assert verifier is None or isinstance(verifier, Verifier)
    report = audit.service.verify(source, trusted, verifier)
    for n in report.notes:
        console.print(f"note: {n}", highlight=False)
    if not report.ok:
        err_console.print(report.line(), highlight=False)
        raise typer.Exit(1)
    console.print(report.line(), highlight=False)


@app.command()
@guarded
def checkpoint(
    home: Path | None = HomeOption,
    out: Path | None = typer.Option(None, "--out", help="Also write the signed note here"),
) -> None:
    """Sign a checkpoint of the current log now and print it (C2SP signed note)."""
    cp = _open(home).service.checkpoint()
    if out is not None:
        out.write_text(cp.note)
    sys.stdout.write(cp.note)


@app.command()
@guarded
def query(
    home: Path | None = HomeOption,
    subject: str | None = typer.Option(None, help="Raw data-subject id (hashed, never stored)"),
    department: str | None = None,
    client: str | None = typer.Option(None, help="Acting client id"),
    topic: str | None = None,
    type: str | None = typer.Option(None, "--type", help="Event type, e.g. token.issued"),
    since: datetime | None = typer.Option(None, help="From this time (UTC)"),
    until: datetime | None = typer.Option(None, help="Before this time (UTC)"),
    after: int = typer.Option(-1, help="Only events with a greater index (paging)"),
    limit: int = typer.Option(100, help="At most this many events"),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl or csv (with proofs)"),
) -> None:
    """Print matching events with inclusion proofs against one signed checkpoint."""
    from audit.export import to_csv, to_jsonl
    from audit.service import Filters

    svc = _open(home).service
    f = Filters(since, until, department, client, topic, type, subject)
    cp, rows = svc.with_proofs(svc.query(f, after, limit))
    verifier = svc.signer.verifier.encode()
    if fmt == "csv":
        sys.stdout.write(to_csv(rows))
        err_console.print(json.dumps({"checkpoint": cp.note, "verifier_key": verifier}))
    elif fmt == "jsonl":
        sys.stdout.writelines(to_jsonl(cp.note, verifier, rows))
    else:
        raise InvalidInput("--format must be jsonl or csv")


@app.command()
@guarded
def prune(home: Path | None = HomeOption) -> None:
    """Drop indexed events older than the retention; checkpoints and an anchor stay."""
    first = _open(home).service.prune()
    console.print(f"log now starts at index {first}", highlight=False)

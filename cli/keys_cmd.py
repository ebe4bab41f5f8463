"""``exchange keys list|rotate|shred|rotate-kek`` and ``exchange kms init``.

They work on this home's database and KMS directly (the gateway need not run) and append
their audit events to the audit log's index. A running gateway notices a shred made here
within its key-cache TTL (60 s); ``POST /v1/keys/shred`` takes effect on that instance at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.common import HomeOption, console, guarded, settings_for
from exchange.errors import InvalidInput

if TYPE_CHECKING:
    from exchange.crypto import FieldCrypto, KeyInfo

app = typer.Typer(help="Data-encryption keys: list, rotate, shred.", no_args_is_help=True)
kms_app = typer.Typer(help="The KMS holding department KEKs.", no_args_is_help=True)
ACTOR = "cli"


def _open(home: Path | None) -> FieldCrypto:
    from audit.factory import open_log
    from exchange.crypto import build_field_crypto
    from exchange.db import make_engine, migrate, session_factory
    from exchange.secrets_store import load_master_key

    settings = settings_for(home)
    settings.resolved_home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    sessions = session_factory(engine)
    audit = open_log(settings, sessions, None)
    return build_field_crypto(settings, sessions, audit, load_master_key(settings))


def _table(keys: list[KeyInfo]) -> None:
    """Tab-separated (scriptable, never truncated); no key material exists to print."""
    console.print("topic\tfield\tversion\tstate\tcipher\tkek\tcreated\tdek_id", highlight=False)
    for k in keys:
        row = (
            k.topic,
            k.field,
            str(k.version),
            k.state,
            k.cipher,
            k.kek,
            k.created_at.isoformat(timespec="seconds"),
            k.dek_id,
        )
        console.print("\t".join(row), highlight=False, markup=False)


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--before {text!r} is not an ISO date or date-time") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@app.command("list")
@guarded
def list_(
    topic: str | None = typer.Option(None, "--topic", help="Only this topic"),
    home: Path | None = HomeOption,
) -> None:
    """Every DEK version (never key material): topic, field, version, state, KEK."""
    crypto = _open(home)
    try:
        _table(crypto.keys.list_keys(topic))
    finally:
        crypto.close()


@app.command()
@guarded
def rotate(
    topic: str | None = typer.Option(None, "--topic", help="Rotate this topic's keys now"),
    field: str | None = typer.Option(None, "--field", help="One field path; default all"),
    due: bool = typer.Option(False, "--due", help="Rotate every key the age/count policy says"),
    home: Path | None = HomeOption,
) -> None:
    """New DEK versions; data under older versions stays readable."""
    if (topic is None) == (not due):
        raise InvalidInput("give either --topic (rotate now) or --due (apply the policy)")
    crypto = _open(home)
    try:
        if topic is not None:
            _table(crypto.keys.rotate(topic, field, actor=ACTOR))
        else:
            _table(crypto.keys.rotate_due(actor=ACTOR))
    finally:
        crypto.close()


@app.command()
@guarded
def shred(
    topic: str = typer.Option(..., "--topic"),
    field: str | None = typer.Option(None, "--field"),
    before: str | None = typer.Option(
        None, "--before", help="Only versions created before (ISO date, UTC if no zone)"
    ),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation"),
    home: Path | None = HomeOption,
) -> None:
    """Destroy DEK versions: records under them become permanently unreadable (redacted)."""
    cutoff = _when(before)
    what = (
        f"{topic}" + (f" field {field}" if field else "") + (f" before {before}" if before else "")
    )
    if not yes:
        typer.confirm(f"Permanently destroy the keys of {what}?", abort=True)
    crypto = _open(home)
    try:
        n = crypto.keys.shred(topic, field, cutoff, actor=ACTOR)
    finally:
        crypto.close()
    console.print(f"shredded {n} key version(s) of {what}", highlight=False)


@app.command("rotate-kek")
@guarded
def rotate_kek(
    department: str = typer.Option(..., "--department"), home: Path | None = HomeOption
) -> None:
    """New KEK version for a department; its DEKs are re-wrapped (Kafka data untouched)."""
    crypto = _open(home)
    try:
        n = crypto.keys.rotate_kek(department, actor=ACTOR)
    finally:
        crypto.close()
    console.print(f"re-wrapped {n} DEK version(s) under the new KEK of {department}")


@kms_app.command()
@guarded
def init(
    department: list[str] = typer.Option(
        [], "--department", help="Also make sure this department has a KEK (repeatable)"
    ),
    home: Path | None = HomeOption,
) -> None:
    """Create the local keystore (or check the PKCS#11 token answers); optionally KEKs."""
    from exchange.crypto.factory import build_kms
    from exchange.crypto.kms_local import LocalKms
    from exchange.errors import DependencyUnavailable
    from exchange.secrets_store import load_master_key

    settings = settings_for(home)
    settings.resolved_home.mkdir(parents=True, exist_ok=True)
    kms = build_kms(settings, load_master_key(settings))
    if isinstance(kms, LocalKms):
        state = "created" if kms.init() else "exists"
        console.print(f"local keystore {state}: {kms.path}", highlight=False)
    elif kms.ping():
        console.print(f"PKCS#11 token {settings.pkcs11_token_label} answers", highlight=False)
    else:
        raise DependencyUnavailable(f"PKCS#11 token {settings.pkcs11_token_label} does not answer")
    if department:
        crypto = _open(home)
        try:
            for d in department:
                console.print(f"{d}: KEK {crypto.keys.ensure_kek(d, actor=ACTOR)}", highlight=False)
        finally:
            crypto.close()

"""``exchange keys list|rotate|shred|rotate-kek`` and ``exchange kms init|metrics``.

By default they call the gateway (``/v1/keys``, ``/v1/kms``) as an admin or the owner's
steward, with the shared options of ``cli/connect.py``. ``--offline`` works on a home's
database and KMS directly instead (the gateway need not run; ``rotate --due`` and ``kms init``
are always offline) and appends their audit events, actor ``cli``, to the home's audit log
like the gateway does: its index AND, when the home has Kafka, its Kafka audit topic (an
index-only append on a live home made ``audit verify --source kafka`` report a false
"deleted"). A running gateway notices an offline shred within its key-cache TTL (60 s); a
shred through the gateway takes effect on that instance at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.common import HomeOption, console, guarded, settings_for
from cli.connect import Session, connected
from exchange.errors import ConfigurationError, InvalidInput

if TYPE_CHECKING:
    from exchange.crypto import FieldCrypto, KeyInfo
    from exchange.kafka.port import KafkaPort
    from exchange.settings import Settings

app = typer.Typer(
    help="Data-encryption keys: list, rotate, shred; the token signing key.", no_args_is_help=True
)
kms_app = typer.Typer(help="The KMS holding department KEKs.", no_args_is_help=True)
ACTOR = "cli"
KEY_COLUMNS = ("topic", "field", "version", "state", "cipher", "kek", "created_at", "dek_id")
OfflineOpt = typer.Option(
    False, "--offline", help="Work on this home's database and KMS directly (no gateway)"
)


def _audit_kafka(settings: Settings) -> KafkaPort | None:
    """The Kafka holding this home's audit topic; None for a home without Kafka (its log is
    the index alone). A home whose Kafka exists but does not answer is refused: no Kafka, no
    key decision (an index-only event would later read as deleted from the topic)."""
    from cli.audit_cmd import _bootstrap
    from exchange.kafka import open_kafka
    from exchange.kafka.broker import LocalBroker

    broker = LocalBroker(settings.resolved_home)
    if not settings.kafka_bootstrap and broker.state() is None:
        if broker.credentials_file.exists():  # its own broker, not running
            raise ConfigurationError(
                f"the audit log of {settings.resolved_home} lives in its Kafka, which is not "
                "running: start it (exchange kafka start) or drop --offline"
            )
        return None
    return open_kafka(
        _bootstrap(settings), "exchange-keys-cli", settings.kafka_client,
        security=settings.kafka_security(),
    )  # fmt: skip


@contextmanager
def _open(home: Path | None, *, writes: bool = True) -> Iterator[FieldCrypto]:
    """This home's keys, auditing into its log (index and Kafka topic, like the gateway);
    ``writes=False`` (listing) needs no Kafka: nothing is appended."""
    from audit.factory import open_log
    from exchange.crypto import build_field_crypto
    from exchange.db import make_engine, migrate, session_factory
    from exchange.secrets_store import load_master_key

    settings = settings_for(home)
    settings.resolved_home.mkdir(parents=True, exist_ok=True)
    kafka = _audit_kafka(settings) if writes else None
    engine = make_engine(settings.sqlalchemy_url)
    try:
        migrate(engine)
        sessions = session_factory(engine)
        audit = open_log(settings, sessions, kafka, announce=False)
        crypto = build_field_crypto(settings, sessions, audit, load_master_key(settings))
        try:
            yield crypto
        finally:
            crypto.close()
    finally:
        engine.dispose()
        if kafka is not None:
            kafka.close()


def _table(cx: Session, keys: list[KeyInfo]) -> None:
    """No key material exists to print: ids, versions, states."""
    cx.emit(
        [
            {
                "topic": k.topic,
                "field": k.field,
                "version": k.version,
                "state": k.state,
                "cipher": k.cipher,
                "kek": k.kek,
                "created_at": k.created_at.isoformat(timespec="seconds"),
                "dek_id": k.dek_id,
            }
            for k in keys
        ],
        KEY_COLUMNS,
    )


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--before {text!r} is not an ISO date or date-time") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@app.command("list")
@connected()
def list_(
    cx: Session,
    topic: str | None = typer.Option(None, "--topic", help="Only this topic"),
    offline: bool = OfflineOpt,
) -> None:
    """Every DEK version (never key material): topic, field, version, state, KEK."""
    if not offline:
        cx.emit(cx.call("GET", "/v1/keys", params={"topic": topic} if topic else None), KEY_COLUMNS)
        return
    with _open(cx.home, writes=False) as crypto:
        _table(cx, crypto.keys.list_keys(topic))


@app.command()
@connected()
def rotate(
    cx: Session,
    topic: str | None = typer.Option(None, "--topic", help="Rotate this topic's keys now"),
    field: str | None = typer.Option(None, "--field", help="One field path; default all"),
    due: bool = typer.Option(
        False, "--due", help="Offline: rotate every key the age/count policy says"
    ),
    offline: bool = OfflineOpt,
) -> None:
    """New DEK versions; data under older versions stays readable."""
    if (topic is None) == (not due):
        raise InvalidInput("give either --topic (rotate now) or --due (apply the policy)")
    if not offline and not due:
        body = {"topic": topic, "field": field}
        cx.emit(cx.call("POST", "/v1/keys/rotate", json=body), KEY_COLUMNS)
        return
    with _open(cx.home) as crypto:
        if topic is not None:
            _table(cx, crypto.keys.rotate(topic, field, actor=ACTOR))
        else:
            _table(cx, crypto.keys.rotate_due(actor=ACTOR))


@app.command()
@connected()
def shred(
    cx: Session,
    topic: str = typer.Option(..., "--topic"),
    field: str | None = typer.Option(None, "--field"),
    before: str | None = typer.Option(
        None, "--before", help="Only versions created before (ISO date, UTC if no zone)"
    ),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation"),
    offline: bool = OfflineOpt,
) -> None:
    """Destroy DEK versions: records under them become permanently unreadable (redacted)."""
    cutoff = _when(before)
    what = (
        f"{topic}" + (f" field {field}" if field else "") + (f" before {before}" if before else "")
    )
    if not yes:
        typer.confirm(f"Permanently destroy the keys of {what}?", abort=True)
    if not offline:
        body = {"topic": topic, "field": field, "before": cutoff.isoformat() if cutoff else None}
        n = int(cx.call("POST", "/v1/keys/shred", json=body)["shredded"])
        cx.emit({"topic": topic, "field": field, "shredded": n})
        return
    with _open(cx.home) as crypto:
        n = crypto.keys.shred(topic, field, cutoff, actor=ACTOR)
    cx.emit(f"shredded {n} key version(s) of {what}")


@app.command("rotate-kek")
@connected()
def rotate_kek(
    cx: Session, department: str = typer.Option(..., "--department"), offline: bool = OfflineOpt
) -> None:
    """New KEK version for a department; its DEKs are re-wrapped (Kafka data untouched)."""
    if not offline:
        cx.emit(cx.call("POST", f"/v1/kms/keks/{department}/rotate"))
        return
    with _open(cx.home) as crypto:
        n = crypto.keys.rotate_kek(department, actor=ACTOR)
    cx.emit(f"re-wrapped {n} DEK version(s) under the new KEK of {department}")


@app.command("rotate-signing")
@connected()
def rotate_signing(cx: Session) -> None:
    """Sign access tokens with a new key (admin); tokens of the old key verify until they
    expire."""
    cx.emit(cx.call("POST", "/v1/admin/signing-keys/rotate"))


@kms_app.command()
@connected()
def metrics(cx: Session) -> None:
    """Counts and seconds per KMS operation (admin; no key material)."""
    snap = cx.call("GET", "/v1/kms/metrics")
    cx.emit([{"operation": op, **vals} for op, vals in snap.items()] if not cx.json else snap)


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
        with _open(home) as crypto:
            for d in department:
                console.print(f"{d}: KEK {crypto.keys.ensure_kek(d, actor=ACTOR)}", highlight=False)

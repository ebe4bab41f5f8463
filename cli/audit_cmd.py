"""``exchange audit ...``: the security officer's tools.

Reads go through the gateway's audited API as an ``auditor`` client (the shared options of
``cli/connect.py``; last resort ``$EXCHANGE_HOME/auditor-credentials.json``), so every query,
export and verification leaves an ``audit.read`` event like any other officer read.

``verify --offline`` and ``prune`` work on a home's database (and Kafka topic) directly, for
when the gateway is down or to check the storage below it, and say so on stderr. An offline
verification is deliberately *not* written to the log: it must not change the storage it
examines (an event appended to a truncated log would chain onto the cut and disguise it), and
it needs the database's own credentials or file access, which the host and database audit,
not the exchange. ``verify-export FILE`` needs nothing but the file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cli.connect import AUDITOR_FILE, EXIT_USAGE, Failure, Session, connected, rendered_errors

if TYPE_CHECKING:
    from audit.factory import Audit
    from audit.witness import Witness
    from audit.witnessing import Cosigned
    from exchange.settings import Settings

app = typer.Typer(
    help="Tamper-evident audit log: query, show, export, verify, checkpoints, activity.",
    no_args_is_help=True,
)
EVENT_COLUMNS = ("index", "ts", "type", "actor", "department", "topic", "outcome")
PAGE = 1000


def _filters(**values: Any) -> dict[str, Any]:
    names = {"since": "from", "until": "to"}
    out = {}
    for k, v in values.items():
        if v is not None:
            out[names.get(k, k)] = v.isoformat() if isinstance(v, datetime) else v
    return out


def _page(cx: Session, params: dict[str, Any], after: int, limit: int) -> Any:
    """One audited page of events. A subject alone is searched with the raw id in the body
    (POST /v1/audit/subjects/search): a URL ends up in proxy and access logs."""
    if set(params) == {"subject"}:
        body = {"subject": params["subject"], "after": after, "limit": limit}
        return cx.call("POST", "/v1/audit/subjects/search", json=body)
    return cx.call("GET", "/v1/audit/events", params={**params, "after": after, "limit": limit})


def _pages(cx: Session, params: dict[str, Any], after: int = -1) -> Iterator[dict[str, Any]]:
    """Every page of events from ``after`` on (one audited read per page)."""
    while True:
        page = _page(cx, params, after, PAGE)
        yield page
        if page["next"] is None or not page["events"]:
            return
        after = int(page["next"])


FilterOpts = {
    "subject": typer.Option(None, "--subject", help="Raw data-subject id (hashed server-side)"),
    "department": typer.Option(None, "--department"),
    "client": typer.Option(None, "--client", help="Acting client id"),
    "topic": typer.Option(None, "--topic"),
    "type": typer.Option(None, "--type", help="Event type, e.g. record.published"),
    "since": typer.Option(None, "--since", help="From this time (UTC)"),
    "until": typer.Option(None, "--until", help="Before this time (UTC)"),
    "outcome": typer.Option(None, "--outcome", help="ok, denied or error"),
}


@app.command()
@connected(AUDITOR_FILE)
def query(
    cx: Session,
    subject: str | None = FilterOpts["subject"],
    department: str | None = FilterOpts["department"],
    client: str | None = FilterOpts["client"],
    topic: str | None = FilterOpts["topic"],
    type: str | None = FilterOpts["type"],
    since: datetime | None = FilterOpts["since"],
    until: datetime | None = FilterOpts["until"],
    outcome: str | None = FilterOpts["outcome"],
    after: int = typer.Option(-1, "--after", help="Only events with a greater index (paging)"),
    limit: int = typer.Option(100, "--limit", min=1, max=1000),
) -> None:
    """Search events (role auditor; the search itself is audited). -o json: with proofs."""
    params = _filters(
        subject=subject, department=department, client=client, topic=topic, type=type,
        since=since, until=until, outcome=outcome,
    )  # fmt: skip
    page = _page(cx, params, after, limit)
    if cx.json:
        cx.emit(page)
        return
    cx.emit([r["event"] for r in page["events"]], EVENT_COLUMNS)
    if page["next"] is not None:
        cx.note(f"more: --after {page['next']}")


@app.command()
@connected(AUDITOR_FILE)
def export(
    cx: Session,
    out: Path = typer.Option(..., "--out", help="File to write"),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl (verifiable offline) or csv"),
    subject: str | None = FilterOpts["subject"],
    department: str | None = FilterOpts["department"],
    client: str | None = FilterOpts["client"],
    topic: str | None = FilterOpts["topic"],
    type: str | None = FilterOpts["type"],
    since: datetime | None = FilterOpts["since"],
    until: datetime | None = FilterOpts["until"],
    outcome: str | None = FilterOpts["outcome"],
) -> None:
    """Export matching events with inclusion proofs; check the file with `verify-export`."""
    from audit.export import to_csv

    if fmt not in ("jsonl", "csv"):
        cx.fail("--format must be jsonl or csv", code=EXIT_USAGE)
    params = _filters(
        subject=subject, department=department, client=client, topic=topic, type=type,
        since=since, until=until, outcome=outcome,
    )  # fmt: skip
    count, note = 0, None
    with out.open("w", encoding="utf-8") as f, cx.progress("exporting audit events") as advance:
        for page in _pages(cx, params):
            fresh = page["checkpoint"] != note  # proofs below are against this checkpoint
            note = page["checkpoint"]
            if fmt == "jsonl":
                if fresh:
                    header = {"checkpoint": note, "verifier_key": page["verifier_key"]}
                    f.write(json.dumps(header) + "\n")
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in page["events"])
            else:
                cp = (note, page["verifier_key"]) if fresh else None
                f.write(to_csv(page["events"], header=count == 0, checkpoint=cp))
            count += len(page["events"])
            advance(len(page["events"]))
    cx.emit({"file": str(out), "format": fmt, "events": count})


@app.command("verify-export")
def verify_export(
    file: Path = typer.Argument(..., help="A JSONL or CSV export (CLI or console)"),
    key: str | None = typer.Option(
        None, "--key", help="Pin the verifier key (or a file holding it); default: the file's"
    ),
) -> None:
    """Check an exported audit file offline: every event is proven in a signed checkpoint."""
    from audit.offline import verify_export as check

    with rendered_errors():
        pinned = _key_text(key)
        with file.open(encoding="utf-8") as f, Session().progress("verifying") as advance:
            report = check(f, pinned, on_event=advance)
        if pinned is None:
            typer.echo("note: verifier key taken from the file; pin it with --key", err=True)
        if not report.ok:
            raise Failure(report.line())
        typer.echo(report.line())


def _key_text(key: str | None) -> str | None:
    if key is None:
        return None
    path = Path(key)
    return path.read_text().strip() if path.exists() else key


@app.command()
@connected(AUDITOR_FILE)
def checkpoint(
    cx: Session,
    out: Path | None = typer.Option(None, "--out", help="Also write the signed note here"),
    cached: bool = typer.Option(False, "--cached", help="The latest one, without signing now"),
) -> None:
    """Sign a checkpoint of the log's head now and print it (C2SP signed note)."""
    cp = cx.call("GET", "/v1/audit/checkpoint", params={"fresh": str(not cached).lower()})
    if out is not None:
        out.write_text(cp["checkpoint"])
    if cx.json:
        cx.emit(cp)
    else:
        sys.stdout.write(cp["checkpoint"])


@app.command()
@connected(AUDITOR_FILE)
def show(
    cx: Session,
    index: int = typer.Argument(..., min=0, help="The event's index in the log"),
    key: str | None = typer.Option(
        None, "--key", help="Pin the verifier key (or a file holding it)"
    ),
) -> None:
    """One event, checked here against its inclusion proof and the signed checkpoint."""
    from audit.offline import verify_export as check

    got = cx.call("GET", f"/v1/audit/events/{index}")
    pinned = _key_text(key)
    header = {"checkpoint": got.pop("checkpoint"), "verifier_key": got.pop("verifier_key")}
    report = check([json.dumps(header), json.dumps(got, ensure_ascii=False)], pinned)
    if not report.ok:
        cx.fail(report.line())
    proven = f"proven in the signed log{'' if pinned else ' (verifier key from the gateway)'}"
    if cx.json:
        cx.emit({**got, **header, "proven": True})
        return
    cx.emit(got["event"])
    cx.note(f"event {index}: {proven}")


@app.command()
@connected(AUDITOR_FILE)
def checkpoints(
    cx: Session,
    before: int | None = typer.Option(None, "--before", min=1, help="Paging: smaller sizes"),
    limit: int = typer.Option(50, "--limit", min=1, max=1000),
) -> None:
    """Signed checkpoints, newest first, each with its consistency to the one before."""
    got = cx.call("GET", "/v1/audit/checkpoints", params=_filters(before=before, limit=limit))
    if cx.json:
        cx.emit(got)
        return
    cx.emit(got["checkpoints"], ("size", "created_at", "status", "previous", "root"))
    if got["next"] is not None:
        cx.note(f"more: --before {got['next']}")


@app.command()
@connected(AUDITOR_FILE)
def proof(
    cx: Session,
    index: int = typer.Argument(..., min=0, help="Leaf index"),
    size: int | None = typer.Option(None, "--size", min=1, help="Tree size (default: latest)"),
    to: int | None = typer.Option(
        None, "--to", min=0, help="Instead: a consistency proof from size INDEX to size TO"
    ),
) -> None:
    """An RFC 9162 inclusion proof of leaf INDEX (or, with --to, a consistency proof)."""
    if to is not None:
        cx.emit(cx.call("GET", "/v1/audit/proofs/consistency", params={"from": index, "to": to}))
        return
    params = _filters(index=index, size=size)
    cx.emit(cx.call("GET", "/v1/audit/proofs/inclusion", params=params))


@app.command()
@connected(AUDITOR_FILE)
def activity(
    cx: Session,
    since: datetime | None = FilterOpts["since"],
    until: datetime | None = FilterOpts["until"],
    bucket: str = typer.Option("hour", "--bucket", help="minute, hour or day"),
    department: str | None = FilterOpts["department"],
) -> None:
    """Events and denials over time per department (default: the last 24 hours)."""
    params = _filters(since=since, until=until, bucket=bucket, department=department)
    got = cx.call("GET", "/v1/audit/activity", params=params)
    if cx.json:
        cx.emit(got)
        return
    rows = [
        {"department": s["department"] or "-", "events": sum(s["events"]),
         "denied": sum(s["denied"])}
        for s in got["series"]
    ]  # fmt: skip
    cx.emit(rows, ("department", "events", "denied"), title=f"{got['from']} .. {got['to']}")


@app.command()
@connected(AUDITOR_FILE)
def verify(
    cx: Session,
    from_checkpoint: Path | None = typer.Option(
        None, "--from-checkpoint", help="A signed checkpoint saved earlier; the log must extend it"
    ),
    key: str | None = typer.Option(
        None, "--key", help="Pin the verifier key (or a file holding it)"
    ),
    offline: bool = typer.Option(
        False, "--offline", help="Read this home's storage directly, not through the gateway"
    ),
    source: str = typer.Option("db", "--source", help="With --offline: db (index) or kafka"),
    topic: str | None = typer.Option(None, "--topic", help="With --offline: the audit topic"),
    witness_key: list[str] | None = typer.Option(
        None,
        "--witness-key",
        help="NAME=ed25519:<base64>: pin a witness site's key (repeatable); default: the "
        "sites the home (--offline) or the gateway knows",
    ),
) -> None:
    """Verify the whole log: every event re-hashed into the signed tree (through the gateway,
    audited), and consistent with --from-checkpoint. --offline: from a home's db or Kafka.
    Checkpoints of ours other sites cosigned are checked (witness signatures) and the log
    must match each of them."""
    trusted = from_checkpoint.read_text() if from_checkpoint else None
    pinned = _key_text(key)
    witnesses = _pinned_witnesses(cx, witness_key or [])
    if offline:
        _verify_offline(cx, source, topic, trusted, pinned, witnesses)
        return
    if source != "db" or topic is not None:
        cx.fail("--source and --topic go with --offline", code=EXIT_USAGE)
    _verify_online(cx, trusted, pinned, witnesses)


def _pinned_witnesses(cx: Session, pins: list[str]) -> list[Witness] | None:
    from audit.witness import Witness
    from exchange.errors import ExchangeError
    from exchange.federation.sites import decode_public_key

    if not pins:
        return None
    out = []
    for pin in pins:
        name, sep, key = pin.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out.append(Witness(name, decode_public_key(key)))
        except (ValueError, ExchangeError):
            cx.fail(f"--witness-key {pin[:40]!r}: expected NAME=ed25519:<base64>", code=EXIT_USAGE)
    return out


def _witness_lines(kept: list[Cosigned]) -> list[str]:
    from audit.witnessing import coverage

    return [f"witnessed by {w} up to size {size}" for w, size in coverage(kept).items()]


def _online_witnessed(cx: Session, pinned: list[Witness] | None) -> tuple[list[Cosigned], str]:
    """The gateway's kept cosigned notes, their witness signatures checked."""
    from audit.checkpoint import BadCheckpoint
    from audit.witness import Witness
    from audit.witnessing import check_notes
    from exchange.errors import ExchangeError
    from exchange.federation.sites import decode_public_key

    got = cx.call("GET", "/v1/audit/witnessed")
    try:
        witnesses = pinned or [
            Witness(str(w["name"]), decode_public_key(str(w["public_key"])))
            for w in got.get("witnesses", [])
        ]
        named = [(str(n["name"]), str(n["note"])) for n in got.get("notes", [])]
        kept = check_notes(named, witnesses)
    except BadCheckpoint as exc:
        cx.fail(exc.message)
    except (ExchangeError, KeyError, TypeError, AttributeError):
        cx.fail("the gateway's list of cosigned checkpoints is malformed")
    note = "" if pinned or not kept else "witness keys from the gateway; pin with --witness-key"
    return kept, note


def _verify_online(
    cx: Session, trusted: str | None, key: str | None, pinned: list[Witness] | None
) -> None:
    from audit.checkpoint import BadCheckpoint, Verifier, open_note
    from audit.merkle import hasher, verify_consistency
    from audit.offline import verify_export as check
    from audit.verify import StoredEntry, verify_log
    from audit.witnessing import coverage, labels

    kept, witness_note = _online_witnessed(cx, pinned)
    head = cx.call("GET", "/v1/audit/checkpoint", params={"fresh": "true"})
    verifier = Verifier.parse(key or head["verifier_key"])
    try:
        cp = open_note(head["checkpoint"], verifier)
    except BadCheckpoint as exc:
        cx.fail(f"the gateway's checkpoint does not verify: {exc.message}")
    h = hasher(cp.hash)
    lines: list[str] = []
    entries: list[StoredEntry] = []
    first: int | None = None
    with cx.progress("verifying the audit log", total=cp.size) as advance:
        for page in _pages(cx, {}):
            lines.append(json.dumps({"checkpoint": page["checkpoint"], "verifier_key":
                                     key or page["verifier_key"]}))  # fmt: skip
            for r in page["events"]:
                index = r["event"]["index"]
                if index >= cp.size:
                    break
                first = index if first is None else first
                lines.append(json.dumps(r, ensure_ascii=False))
                entries.append(StoredEntry(r["entry"].encode()))
                advance()
            if page["events"] and page["events"][-1]["event"]["index"] >= cp.size - 1:
                break
    proofs = check(lines, key)  # each event against the checkpoint its page was proven in
    if not proofs.ok:
        cx.fail(proofs.line())
    notes: list[str] = []
    cosigned = [c.note for c in kept]
    if first == 0:  # the whole log is here: recompute it, naming the first bad index
        report = verify_log(
            h, entries, checkpoints=[head["checkpoint"]], verifier=verifier,
            expected_size=cp.size, trusted=[*([trusted] if trusted else []), *cosigned],
            labels=labels(kept),
        )  # fmt: skip
        if not report.ok:
            cx.fail(report.line())
    else:
        notes.append(f"log pruned below index {first}: each event checked by its proof")
        named = [(trusted, "the trusted checkpoint")] if trusted else []
        named += [(c.note, f"the checkpoint cosigned by {', '.join(c.by)}") for c in kept]
        for text, what in named:
            try:
                old = open_note(text, verifier)
            except BadCheckpoint as exc:
                cx.fail(f"TAMPERED: {what} does not verify: {exc.message}")
            if old.size > cp.size:
                cx.fail(f"TAMPERED: the log ends at {cp.size}, {what} has size {old.size}")
            proof = cx.call(
                "GET", "/v1/audit/proofs/consistency", params={"from": old.size, "to": cp.size}
            )
            hashes = [bytes.fromhex(p) for p in proof.get("proof", [])]
            if not verify_consistency(h, old.size, cp.size, hashes, old.root, cp.root):
                cx.fail(f"TAMPERED: the log does not extend {what} (size {old.size})")
    if witness_note:
        notes.append(witness_note)
    if key is None:
        notes.append("verifier key from the gateway; pin it with --key")
    result = {
        "ok": True,
        "events": len(entries),
        "size": cp.size,
        "root": cp.root.hex(),
        "extends_trusted": bool(trusted),
        "witnessed": coverage(kept),
        "notes": notes,
    }
    if cx.json:
        cx.emit(result)
        return
    for n in notes:
        cx.note(f"note: {n}")
    for line in _witness_lines(kept):
        typer.echo(line)
    extends = ", extends the trusted checkpoint" if trusted else ""
    typer.echo(f"ok: {cp.size} events, root {cp.root.hex()}{extends}")


# -- offline (a home's storage, no gateway) ------------------------------------------------
def _home_settings(cx: Session) -> Settings:
    from exchange.settings import Settings

    settings = Settings(home=cx.home) if cx.home else Settings()
    home = settings.resolved_home
    if settings.database_url is None and not (home / "exchange.db").exists():
        cx.fail(
            f"no exchange home at {home} (looked for {home / 'exchange.db'})",
            "pass --home DIR or set EXCHANGE_HOME; or drop --offline to verify through the gateway",
            EXIT_USAGE,
        )
    return settings


def _open(cx: Session, topic: str | None = None, kafka: bool = False) -> Audit:
    from sqlalchemy.exc import SQLAlchemyError

    from audit.factory import open_audit
    from audit.settings import AuditSettings
    from exchange.db import make_engine, migrate, session_factory
    from exchange.kafka import open_kafka

    settings = _home_settings(cx)
    try:
        engine = make_engine(settings.sqlalchemy_url)
        migrate(engine)
    except SQLAlchemyError as exc:
        cx.fail(f"cannot open the database of {settings.resolved_home}: {exc.__class__.__name__}")
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


def _bootstrap(settings: Settings) -> str:
    from exchange.errors import ConfigurationError
    from exchange.kafka.broker import LocalBroker

    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    state = LocalBroker(settings.resolved_home).state()
    if state is None:
        raise ConfigurationError("no Kafka: set EXCHANGE_KAFKA_BOOTSTRAP or start the broker")
    return state.bootstrap


def _witnessed(cx: Session, pinned: list[Witness] | None) -> list[Cosigned]:
    """Checkpoints of ours that other sites cosigned, their witness signatures checked: the
    log must match them too (README, "Sites and federation")."""
    from audit.witnessing import check_notes, witnesses_of
    from exchange.errors import ExchangeError
    from exchange.federation.sites import Federation

    fed = Federation(_home_settings(cx).resolved_home)
    try:
        named = [(p.name, note) for p, note in fed.cosigned_notes()]
        return check_notes(named, pinned if pinned is not None else witnesses_of(fed))
    except ExchangeError as exc:
        cx.fail(exc.message)


def _verify_offline(
    cx: Session,
    source: str,
    topic: str | None,
    trusted: str | None,
    key: str | None,
    pinned: list[Witness] | None = None,
) -> None:
    from audit.checkpoint import Verifier
    from audit.witnessing import labels

    if source not in ("db", "kafka"):
        cx.fail("--source must be db or kafka", code=EXIT_USAGE)
    audit = _open(cx, topic, kafka=source == "kafka")
    verifier = Verifier.parse(key) if key else None
    where = f"Kafka topic {audit.settings.topic}" if source == "kafka" else "the database"
    cx.note(f"offline: reading {where} of this home directly, not through the gateway")
    kept = _witnessed(cx, pinned)
    cosigned = [c.note for c in kept]
    with cx.progress("verifying (offline)"):
        report = audit.service.verify(
            source, [*([trusted] if trusted else []), *cosigned], verifier, labels(kept)
        )
    for n in report.notes:
        cx.note(f"note: {n}")
    if kept:
        cx.note(f"note: held to {len(kept)} checkpoint(s) cosigned by other sites")
    if not report.ok:
        cx.fail(report.line())
    for line in _witness_lines(kept):
        typer.echo(line)
    typer.echo(report.line())


@app.command()
@connected(AUDITOR_FILE)
def prune(cx: Session) -> None:
    """Offline maintenance: drop indexed events past the retention (checkpoints and an anchor
    stay) in this home's database."""
    first = _open(cx).service.prune()
    cx.emit({"log_starts_at": first})

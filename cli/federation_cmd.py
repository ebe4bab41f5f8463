"""``exchange federation``: this site's identity, the sites it knows, shared topics, MM2.

Sharing is a decision of both administrations, each audited in its own site's log:

1. owner:  ``exchange federation share TOPIC --to SITE --grant-file F`` lets SITE's
   MirrorMaker read TOPIC at our broker and writes the grant (owner broker address and the
   mirror user's credentials, 0600) for the remote admin — hand it over like any secret;
2. remote: ``exchange federation accept TOPIC --from OWNER --grant-file F``;
3. remote: ``exchange federation start`` runs MirrorMaker 2 (a running one picks the change up).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from cli.common import HomeOption, console, guarded, settings_for
from exchange.auditing import AuditRecord
from exchange.errors import ConfigurationError, ExchangeError, InvalidInput
from exchange.federation.sites import Federation
from exchange.settings import Settings

app = typer.Typer(help="Sites, shared topics and MirrorMaker 2.", no_args_is_help=True)
sites_app = typer.Typer(help="The sites this site knows.", no_args_is_help=True)
app.add_typer(sites_app, name="sites")
ACTOR = "cli"


def _fed(home: Path | None) -> tuple[Settings, Federation]:
    s = settings_for(home)
    return s, Federation(s.resolved_home)


def _bootstrap(s: Settings) -> str:
    if s.kafka_bootstrap:
        return s.kafka_bootstrap
    from exchange.kafka.broker import LocalBroker

    st = LocalBroker(s.resolved_home).state()
    if st is None:
        raise ConfigurationError("this site's Kafka is not running (exchange kafka start)")
    return st.bootstrap


def _audit(s: Settings, record: AuditRecord) -> None:
    """Append to this site's audit log: its index AND its Kafka audit topic, like the gateway.
    An index-only append while the site runs left the topic without the event, and
    `exchange audit verify --source kafka` then cried "TAMPERED: deleted" (a false alarm).
    No Kafka, no decision: the command fails before anything changes in the log."""
    from audit.factory import open_log
    from cli.audit_cmd import _bootstrap
    from exchange.db import make_engine, migrate, session_factory
    from exchange.kafka import open_kafka

    kafka = open_kafka(
        _bootstrap(s), "exchange-federation-cli", s.kafka_client, security=s.kafka_security()
    )
    engine = make_engine(s.sqlalchemy_url)
    try:
        migrate(engine)
        open_log(s, session_factory(engine), kafka, announce=False).append(record)
    finally:
        engine.dispose()
        kafka.close()


@app.command()
@guarded
def init(
    name: str = typer.Argument(..., help="This site's name"), home: Path | None = HomeOption
) -> None:
    """Create this site's identity key pair (once) and print its public key."""
    s, fed = _fed(home)
    console.print(f"{fed.init(name)}", highlight=False)
    _audit(s, AuditRecord("federation.site_initialised", ACTOR, data={"site": name}))


@app.command()
@guarded
def identity(
    jwk: bool = typer.Option(
        False,
        "--jwk",
        help="Print the public key as a JWK (the owner registers it on the "
        "client that acts for one of our departments)",
    ),
    audit_key: bool = typer.Option(
        False, "--audit-key", help="Print our audit checkpoint verifier key (for `sites add`)"
    ),
    home: Path | None = HomeOption,
) -> None:
    """Print ``NAME PUBLIC_KEY``: what the other site's admin passes to ``sites add``."""
    from exchange.federation.link import public_jwk

    s, fed = _fed(home)
    if audit_key:
        from audit.keys import load_verifier

        console.print(load_verifier(s.resolved_home).encode(), highlight=False)
        return
    if jwk:
        console.print(json.dumps(public_jwk(fed.private_key())), highlight=False)
        return
    console.print(f"{fed.name()} {fed.public_key()}", highlight=False)


@app.command()
@guarded
def link(
    department: str,
    site: str = typer.Option(..., "--site", help="The owner site"),
    client_id: str = typer.Option(
        ..., "--client-id", help="The owner's client (with our site key as its JWK)"
    ),
    home: Path | None = HomeOption,
) -> None:
    """Our DEPARTMENT reads SITE's shared topics as SITE's client CLIENT_ID (site link)."""
    s, fed = _fed(home)
    fed.link(department, site, client_id)
    _audit(
        s,
        AuditRecord(
            "federation.linked",
            ACTOR,
            department=department,
            data={"site": site, "client_id": client_id},
        ),
    )
    console.print(f"{department} reads {site} as {client_id}", highlight=False)


@sites_app.command("add")
@guarded
def sites_add(
    name: str,
    url: str = typer.Argument(..., help="The site's gateway URL"),
    public_key: str = typer.Argument(..., help="ed25519:<base64> from its `federation identity`"),
    audit_key: str | None = typer.Option(
        None, "--audit-key", help="Its audit checkpoint verifier key (to witness its log)"
    ),
    home: Path | None = HomeOption,
) -> None:
    """Know (or update) a site by name, gateway URL and identity public key."""
    s, fed = _fed(home)
    if audit_key is not None:
        from audit.checkpoint import Verifier

        Verifier.parse(audit_key)
    site = fed.add_site(name, url, public_key, audit_key)
    _audit(
        s,
        AuditRecord(
            "federation.site_added",
            ACTOR,
            data={"site": site.name, "url": site.url, "public_key": site.public_key},
        ),
    )
    console.print(f"site {site.name} {site.url}", highlight=False)


@sites_app.command("list")
@guarded
def sites_list(home: Path | None = HomeOption) -> None:
    """Tab-separated: name, URL, public key."""
    _, fed = _fed(home)
    for site in fed.sites():
        console.print(f"{site.name}\t{site.url}\t{site.public_key}", highlight=False)


@app.command()
@guarded
def share(
    topic: str,
    to: str = typer.Option(..., "--to", help="The remote site"),
    grant_file: Path = typer.Option(..., "--grant-file", help="Where to write the grant (0600)"),
    bootstrap: str | None = typer.Option(
        None, "--bootstrap", help="Our broker address as the remote site reaches it"
    ),
    home: Path | None = HomeOption,
) -> None:
    """Share our TOPIC to a site: its MirrorMaker may read TOPIC (only) at our broker."""
    from exchange.federation.sites import state_topic
    from exchange.kafka import open_kafka
    from exchange.kafka.mirror import grant_mirror_reader
    from exchange.kafka.security import write_private

    s, fed = _fed(home)
    ours = _bootstrap(s)
    kafka = open_kafka(ours, "exchange-federation", "kafka-python", security=s.kafka_security())
    try:
        if topic not in kafka.list_topics():
            raise InvalidInput(f"topic {topic} does not exist at this site")
        fed.site(to)
        # The catalog entry and agreement state of what we share to the site travel in this
        # compacted topic (written by our gateway), copied by the same MirrorMaker flow.
        kafka.ensure_topic(state_topic(fed.name(), to), 1, compact=True)
    finally:
        kafka.close()
    fed.share(topic, to)
    user, password = fed.mirror_user(to)
    grant_mirror_reader(ours, s.kafka_security(), user, password, fed.mirrored_topics_to(to))
    write_private(grant_file, json.dumps(fed.grant(to, bootstrap or ours), indent=2))
    _audit(
        s,
        AuditRecord("federation.shared", ACTOR, topic=topic, data={"to": to, "mirror_user": user}),
    )
    console.print(f"shared {topic} to {to}; grant in {grant_file} (secret)", highlight=False)


@app.command()
@guarded
def unshare(
    topic: str, to: str = typer.Option(..., "--to"), home: Path | None = HomeOption
) -> None:
    """Stop sharing TOPIC: the remote MirrorMaker loses read access at our broker at once."""
    from exchange.kafka.mirror import revoke_mirror_reader

    s, fed = _fed(home)
    fed.unshare(topic, to)
    user, _ = fed.mirror_user(to)
    revoke_mirror_reader(_bootstrap(s), s.kafka_security(), user, topic)
    _audit(s, AuditRecord("federation.unshared", ACTOR, topic=topic, data={"to": to}))
    console.print(f"{topic} no longer shared to {to}")


@app.command()
@guarded
def accept(
    topic: str,
    from_: str = typer.Option(..., "--from", help="The owner site"),
    grant_file: Path = typer.Option(..., "--grant-file"),
    home: Path | None = HomeOption,
) -> None:
    """Accept the owner's share of TOPIC: our MirrorMaker copies it here (sealed as it is)."""
    s, fed = _fed(home)
    try:
        grant: dict[str, Any] = json.loads(grant_file.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read the grant file {grant_file}: {exc}") from None
    if grant.get("owner") != from_:
        raise InvalidInput(f"the grant is from {grant.get('owner')!r}, not {from_!r}")
    sh = fed.accept(topic, grant)
    _audit(s, AuditRecord("federation.accepted", ACTOR, topic=topic, data={"from": sh.site}))
    console.print(f"accepted {topic} from {sh.site}")


@app.command()
@guarded
def start(home: Path | None = HomeOption) -> None:
    """Start the MirrorMaker 2 supervisor in the background (no-op when it runs)."""
    from exchange.federation.supervisor import read_state
    from exchange.kafka.jars import ensure_mirror_jars

    s, fed = _fed(home)
    fed.name()
    if (st := read_state(fed)) is not None:
        console.print(f"running pid={st.supervisor_pid} state={st.state}", highlight=False)
        return
    ensure_mirror_jars()
    (fed.dir / "mirror").mkdir(parents=True, exist_ok=True, mode=0o700)
    out = os.open(
        fed.dir / "mirror" / "supervisor.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
    )
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "federation", "run", "--home", str(s.resolved_home)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        os.close(out)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = read_state(fed)
        if st is not None and st.supervisor_pid == proc.pid:
            console.print(f"started pid={proc.pid} state={st.state}", highlight=False)
            return
        if proc.poll() is not None:
            raise ConfigurationError(
                f"the MirrorMaker supervisor exited (see {fed.dir / 'mirror' / 'supervisor.log'})"
            )
        time.sleep(0.2)
    raise ConfigurationError("the MirrorMaker supervisor did not report its state")


@app.command(hidden=True)
@guarded
def run(home: Path | None = HomeOption) -> None:
    """The supervisor itself (foreground): what ``start`` runs in the background."""
    from exchange.federation.supervisor import Supervisor
    from exchange.kafka.mirror import ClusterEnd

    s, fed = _fed(home)
    Supervisor(fed, ClusterEnd(fed.name(), _bootstrap(s), s.kafka_security())).run()


@app.command()
@guarded
def status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable"),
    home: Path | None = HomeOption,
) -> None:
    """Supervisor and MirrorMaker state, and per mirrored topic the records not yet copied."""
    from exchange.federation.sites import state_topic
    from exchange.federation.supervisor import flows, read_state
    from exchange.kafka.mirror import mirrored_positions, records_behind

    s, fed = _fed(home)
    st = read_state(fed)
    topics: list[dict[str, Any]] = []
    state: list[dict[str, Any]] = []  # the owners' catalog/agreement state topics
    for flow in flows(fed, _here(s, fed)):
        try:
            pos = mirrored_positions(flow.target.bootstrap, flow.target.security, flow.source.alias)
        except ExchangeError:  # not reachable: shown as unknown
            pos = None
        for topic in flow.topics:
            lag: int | None = None
            if pos is not None:
                try:
                    lag = records_behind(flow.source.bootstrap, flow.source.security, topic, pos)
                except ExchangeError:  # owner unreachable: lag unknown
                    lag = None
            row = {"topic": topic, "from": flow.source.alias, "lag": lag}
            (state if topic == state_topic(flow.source.alias, fed.name()) else topics).append(row)
    witnesses = _witness_status(fed)
    witnessing = [  # the sites whose logs we cosign
        {"site": site, "size": w.get("size"), "at": w.get("at")}
        for site, w in sorted(fed.witnessed().items())
    ]
    body = {
        "state": st.state if st else "stopped",
        "supervisor_pid": st.supervisor_pid if st else None,
        "mm2_pid": st.mm2_pid if st else None,
        "restarts": st.restarts if st else 0,
        "topics": topics,
        "witnesses": witnesses,
        "witnessing": witnessing,
        "state_topics": state,
    }
    if as_json:
        console.print(json.dumps(body), highlight=False, soft_wrap=True)
    else:
        console.print(
            f"state={body['state']} pid={body['supervisor_pid']} mm2_pid={body['mm2_pid']} "
            f"restarts={body['restarts']}",
            highlight=False,
        )
        for t in [*topics, *state]:
            lag_text = "unknown" if t["lag"] is None else str(t["lag"])
            console.print(f"{t['topic']}\tfrom={t['from']}\tlag={lag_text}", highlight=False)
        for w in witnesses:
            ago = "never" if w["seconds_ago"] is None else f"{w['seconds_ago']} s ago"
            err = f"\terror={w['error']} (failures={w['failures']})" if w["error"] else ""
            console.print(
                f"witness {w['site']}\tlast cosigned={w['at'] or '-'} ({ago})"
                f"\tsize={w['size']}{err}",
                highlight=False,
            )
        for c in witnessing:
            console.print(
                f"we witness {c['site']}\tup to size {c['size']}\tlast {c['at']}",
                highlight=False,
            )
    if st is None:
        raise typer.Exit(1)


def _witness_status(fed: Federation) -> list[dict[str, Any]]:
    """Per known site: when it last cosigned our audit checkpoint, and the last error."""
    state = fed.witnesses()
    out = []
    for site in fed.sites():
        w = state.get(site.name, {})
        at = w.get("at_epoch")
        out.append(
            {
                "site": site.name,
                "at": w.get("at"),
                "seconds_ago": None if at is None else max(0, int(time.time() - float(at))),
                "size": w.get("size"),
                "last_attempt": w.get("last_attempt"),
                "error": w.get("error"),
                "failures": int(w.get("failures", 0)),
            }
        )
    return out


def _here(s: Settings, fed: Federation) -> Any:
    from exchange.kafka.mirror import ClusterEnd

    return ClusterEnd(fed.name(), _bootstrap(s), s.kafka_security())


@app.command()
@guarded
def stop(home: Path | None = HomeOption) -> None:
    """Stop the supervisor and MirrorMaker."""
    from exchange.federation.supervisor import stop as stop_mirror

    _, fed = _fed(home)
    console.print("stopped" if stop_mirror(fed) else "not running")


witnessed_app = typer.Typer(help="Our checkpoints cosigned by other sites.", no_args_is_help=True)
app.add_typer(witnessed_app, name="witnessed")


@app.command()
@guarded
def witness(
    request_file: Path = typer.Argument(
        ..., help="The site's `witness-request` file (or, the first time, its bare checkpoint)"
    ),
    site: str = typer.Option(..., "--site", help="The site whose checkpoint this is"),
    out: Path | None = typer.Option(None, "--out", help="Write the cosigned note here"),
    home: Path | None = HomeOption,
) -> None:
    """Cosign another site's audit checkpoint by hand (what the gateways do on a schedule):
    its signature, and the consistency proof from the size we cosigned last, are checked."""
    from audit.cosigning import answer_request
    from audit.witness import parse_request

    s, fed = _fed(home)
    try:
        text = request_file.read_text()
    except OSError as exc:
        raise InvalidInput(f"cannot read {request_file}: {exc.strerror}") from None
    note, old_size, proof = parse_request(text)
    cosigned = answer_request(fed, _CliSink(s), site, note, old_size, proof)
    if out is not None:
        out.write_text(cosigned)
    sys.stdout.write(cosigned)


def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class _CliSink:
    """The audit sink of a CLI command: each record appended like :func:`_audit` does."""

    def __init__(self, s: Settings) -> None:
        self.s = s

    def append(self, record: AuditRecord) -> None:
        _audit(self.s, record)

    def append_many(self, records: Sequence[AuditRecord]) -> None:
        for r in records:
            _audit(self.s, r)


@app.command("witness-request")
@guarded
def witness_request(
    to: str = typer.Option(..., "--to", help="The witness site"),
    out: Path = typer.Option(..., "--out", help="Where to write the request"),
    home: Path | None = HomeOption,
) -> None:
    """Sign a checkpoint of our log now and write it with the consistency proof from the size
    TO cosigned last (the hand-over form of what the gateway sends on a schedule)."""
    from audit.factory import open_audit
    from audit.witness import request_text
    from exchange.db import make_engine, migrate, session_factory

    s, fed = _fed(home)
    fed.site(to)
    engine = make_engine(s.sqlalchemy_url)
    try:
        migrate(engine)
        service = open_audit(s, session_factory(engine), None, announce=False).service
        cp = service.checkpoint()
        old = int(fed.witnesses().get(to, {}).get("size", 0))
        proof: list[bytes] = []
        if 0 < old < cp.size:
            proof = [bytes.fromhex(p) for p in service.consistency(old, cp.size)["proof"]]
    finally:
        engine.dispose()
    out.write_text(request_text(cp.note, old, proof))
    console.print(
        f"checkpoint of size {cp.size}, proof from size {old}: {out} (hand it to {to})",
        highlight=False,
    )


@witnessed_app.command("add")
@guarded
def witnessed_add(note_file: Path, home: Path | None = HomeOption) -> None:
    """Keep a checkpoint of ours that another site cosigned (``audit verify`` checks it)."""
    import base64

    from audit.checkpoint import open_note
    from audit.keys import load_verifier
    from audit.witness import Witness, cosigned_at
    from audit.witnessing import store
    from exchange.federation.sites import decode_public_key

    s, fed = _fed(home)
    try:
        note = note_file.read_text()
    except OSError as exc:
        raise InvalidInput(f"cannot read {note_file}: {exc.strerror}") from None
    verifier = load_verifier(s.resolved_home)
    path, by = store(fed, note, verifier)
    cp = open_note(note, verifier)
    for site in fed.sites():  # the next witness-request proves consistency from here
        at = cosigned_at(note, Witness(site.name, decode_public_key(site.public_key)))
        if at is not None and cp.size >= int(fed.witnesses().get(site.name, {}).get("size", 0)):
            root = base64.b64encode(cp.root).decode()
            fed.update_witness(site.name, size=cp.size, root=root, at=_iso(at), at_epoch=at)
    _audit(s, AuditRecord("federation.cosigned_stored", ACTOR, data={"file": path.name, "by": by}))
    console.print(f"kept {path.name}, witnessed by {', '.join(by)}", highlight=False)


@witnessed_app.command("list")
@guarded
def witnessed_list(home: Path | None = HomeOption) -> None:
    """Our cosigned checkpoints and who witnessed each (signatures checked)."""
    from audit.witnessing import checked_notes

    _, fed = _fed(home)
    for c in checked_notes(fed):
        console.print(f"{c.name} size {c.size} witnessed by {', '.join(c.by)}", highlight=False)

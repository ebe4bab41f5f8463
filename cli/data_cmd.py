"""``exchange topics|publish|subscribe|tail``: the data plane from the shell.

``publish`` sends JSON values (a file of JSON Lines, a JSON array, stdin or ``--value``) in
batches, each one Kafka transaction; ``subscribe`` manages pull subscriptions (pull, commit,
seek, replay); ``tail`` follows a topic live over Server-Sent Events, like ``kcat -C`` but
through the gateway, printing only what the caller's agreements grant.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import httpx
import typer

from cli.connect import Session, connected, write_json
from exchange.client import ApiError

topics_app = typer.Typer(help="Topics: create, list, show.", no_args_is_help=True)
subscribe_app = typer.Typer(help="Pull subscriptions: create, pull, replay.", no_args_is_help=True)

TOPIC_COLUMNS = ("topic", "owner", "site", "title", "share_type", "update_cycle", "partitions")
SUB_COLUMNS = ("id", "topic", "consumer", "fields", "start", "status", "webhook_url")
RECORD_COLUMNS = ("partition", "offset", "key", "value", "redacted")


def _p(part: str) -> str:
    return quote(part, safe="")


# -- topics ------------------------------------------------------------------------------
@topics_app.command("list")
@connected()
def topics_list(
    cx: Session, owner: str | None = typer.Option(None, "--owner", help="Only this department's")
) -> None:
    """Topics in the catalog (every caller may browse it)."""
    cx.emit(cx.call("GET", "/v1/catalog", params={"dept": owner} if owner else None), TOPIC_COLUMNS)


@topics_app.command("show")
@connected()
def topics_show(cx: Session, topic: str) -> None:
    """One topic's settings."""
    cx.emit(cx.call("GET", f"/v1/topics/{_p(topic)}"))


@topics_app.command("create")
@connected()
def topics_create(
    cx: Session,
    name: str = typer.Argument(..., help="<owner department>.<dataset>"),
    schema: Path | None = typer.Option(
        None, "--schema", help="Register this .avsc as <name>-value first"
    ),
    owner: str | None = typer.Option(None, "--owner", help="Default: the part before the dot"),
    share_type: str = typer.Option(
        "conditional", "--share-type", help="unconditional, conditional or not_shared"
    ),
    title: str = typer.Option("", "--title"),
    description: str = typer.Option("", "--description"),
    partitions: int = typer.Option(3, "--partitions"),
    update_cycle: str = typer.Option("realtime", "--update-cycle"),
    cipher: str = typer.Option("AES256_GCM", "--cipher", help="AES256_GCM or SM4_GCM"),
    legal_basis: str | None = typer.Option(None, "--legal-basis", help="For not_shared topics"),
) -> None:
    """Create a topic (admin, or the owner's steward); optionally register its schema."""
    subject = f"{name}-value"
    if schema is not None:
        from cli.schema_cmd import read_schema

        path = f"/registry/subjects/{_p(subject)}/versions"
        cx.call("POST", path, json={"schema": read_schema(cx, schema)})
    body = {
        "name": name,
        "owner": owner or name.split(".", 1)[0],
        "partitions": partitions,
        "value_subject": subject,
        "share_type": share_type,
        "title": title,
        "description": description,
        "update_cycle": update_cycle,
        "cipher": cipher,
        "legal_basis": legal_basis,
    }
    cx.emit(cx.call("POST", "/v1/topics", json=body))


# -- publish -----------------------------------------------------------------------------
def _values(cx: Session, source: str | None, value: str | None) -> Iterator[Any]:
    if value is not None:
        yield _json(cx, value, "--value")
        return
    if source is None:
        cx.fail("give a FILE (JSON Lines or a JSON array), '-' for stdin, or --value JSON")
    if source == "-":
        yield from _lines(cx, sys.stdin, "stdin")
        return
    path = Path(source)
    if path.suffix == ".json":
        data = _json(cx, path.read_text(encoding="utf-8"), source)
        yield from data if isinstance(data, list) else [data]
        return
    with path.open(encoding="utf-8") as f:
        yield from _lines(cx, f, source)


def _lines(cx: Session, f: TextIO, name: str) -> Iterator[Any]:
    for n, line in enumerate(f, 1):
        if line.strip():
            yield _json(cx, line, f"{name} line {n}")


def _json(cx: Session, text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        cx.fail(f"{where} is not JSON: {exc}")


def _record(cx: Session, item: Any, key_field: str | None, wrapped: bool) -> dict[str, Any]:
    if wrapped:
        if not isinstance(item, dict) or "value" not in item:
            cx.fail('--records: each item must be {"key": ..., "value": {...}}')
        return {k: item[k] for k in ("key", "value", "headers") if k in item}
    rec: dict[str, Any] = {"value": item}
    if key_field is not None:
        if not isinstance(item, dict) or item.get(key_field) is None:
            cx.fail(f"a record has no {key_field!r} to use as its key")
        rec["key"] = str(item[key_field])
    return rec


def _batches(records: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for r in records:
        batch.append(r)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def publish(
    cx: Session,
    topic: str,
    source: str | None = typer.Argument(None, metavar="[FILE|-]", help="JSON Lines or array"),
    value: str | None = typer.Option(None, "--value", help="Publish this one JSON value"),
    key: str | None = typer.Option(None, "--key", help="Field whose value is the record key"),
    records: bool = typer.Option(
        False, "--records", help='Items are {"key", "value", "headers"} objects'
    ),
    batch_size: int = typer.Option(500, "--batch-size", min=1, help="Records per transaction"),
    idempotency_key: str | None = typer.Option(
        None,
        "--idempotency-key",
        help="Prefix of each batch's Idempotency-Key (PREFIX-N): a rerun publishes nothing twice",
    ),
) -> None:
    """Publish JSON records to TOPIC (role publisher of its owner); each batch is atomic."""
    client = cx.client()
    items = (_record(cx, v, key, records) for v in _values(cx, source, value))
    sent, first, last, schema_id = 0, None, None, None
    started = time.monotonic()
    with cx.progress(f"publishing to {topic}") as advance:
        for n, batch in enumerate(_batches(items, batch_size)):
            ikey = f"{idempotency_key}-{n}" if idempotency_key else None
            out = client.publish(topic, batch, idempotency_key=ikey)
            offsets = out["offsets"]
            first = first or offsets[0]
            last, schema_id = offsets[-1], out["schema_id"]
            sent += len(batch)
            advance(len(batch))
    if sent == 0:
        cx.fail("nothing to publish: the input holds no records")
    seconds = time.monotonic() - started
    cx.emit(
        {
            "topic": topic,
            "records": sent,
            "schema_id": schema_id,
            "first": f"{first['partition']}/{first['offset']}" if first else None,
            "last": f"{last['partition']}/{last['offset']}" if last else None,
            "seconds": round(seconds, 3),
        }
    )


publish_command = connected()(publish)


# -- subscriptions -----------------------------------------------------------------------
@subscribe_app.command("create")
@connected()
def subscribe_create(
    cx: Session,
    topic: str,
    fields: list[str] | None = typer.Option(None, "--field", help="Only these granted fields"),
    start: str = typer.Option("earliest", "--start", help="earliest, latest or ISO time"),
    webhook: str | None = typer.Option(None, "--webhook", help="Deliver by HTTPS POST here"),
) -> None:
    """Subscribe to TOPIC under an approved agreement (role subscriber)."""
    body: dict[str, Any] = {"topic": topic, "start": start}
    if fields:
        body["fields"] = fields
    if webhook:
        body["webhook"] = {"url": webhook}
    cx.emit(cx.call("POST", "/v1/subscriptions", json=body))


@subscribe_app.command("list")
@connected()
def subscribe_list(cx: Session) -> None:
    """Your department's subscriptions."""
    cx.emit(cx.call("GET", "/v1/subscriptions"), SUB_COLUMNS)


@subscribe_app.command("show")
@connected()
def subscribe_show(cx: Session, subscription: str) -> None:
    """One subscription with its committed cursor."""
    cx.emit(cx.call("GET", f"/v1/subscriptions/{_p(subscription)}"))


@subscribe_app.command("close")
@connected()
def subscribe_close(cx: Session, subscription: str) -> None:
    """Close a subscription."""
    cx.call("DELETE", f"/v1/subscriptions/{_p(subscription)}")
    cx.emit({"id": subscription, "status": "closed"})


def _show_records(cx: Session, rows: list[dict[str, Any]]) -> None:
    if cx.json:
        for r in rows:  # JSON Lines: one record per line, as they come
            sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    elif rows:
        cx.emit(rows, RECORD_COLUMNS)


@subscribe_app.command("pull")
@connected()
def subscribe_pull(
    cx: Session,
    subscription: str,
    max_records: int = typer.Option(100, "--max", min=1, max=5000),
    wait_ms: int = typer.Option(1000, "--wait-ms", min=0, max=30000),
    commit: bool = typer.Option(True, "--commit/--no-commit", help="Commit after printing"),
) -> None:
    """Fetch the next page from the committed cursor (records as JSON Lines with -o json)."""
    page = cx.client().poll(subscription, max=max_records, wait_ms=wait_ms)
    _show_records(cx, page["records"])
    if commit and page["records"]:
        cx.client().commit(subscription, page["cursor"])
    if not cx.json:
        cx.note(f"{len(page['records'])} record(s), {page['withheld']} withheld by policy")
    if not commit and page["records"]:  # the cursor to commit once they are processed
        cx.note(f"commit with: exchange subscribe commit {subscription} {page['cursor']}")


@subscribe_app.command("commit")
@connected()
def subscribe_commit(cx: Session, subscription: str, cursor: str) -> None:
    """Commit CURSOR: later pulls start after it."""
    cx.emit(cx.client().commit(subscription, cursor))


@subscribe_app.command("seek")
@connected()
def subscribe_seek(
    cx: Session,
    subscription: str,
    start: str = typer.Argument(..., help="earliest, latest, an ISO time or a cursor"),
) -> None:
    """Move the committed cursor (replay from a time, or skip ahead)."""
    out = cx.call("POST", f"/v1/subscriptions/{_p(subscription)}/seek", json={"start": start})
    cx.emit(out)


@subscribe_app.command("replay")
@connected()
def subscribe_replay(
    cx: Session,
    subscription: str,
    start: str = typer.Option("earliest", "--from", help="earliest, an ISO time or a cursor"),
    out: Path | None = typer.Option(None, "--out", help="Write JSON Lines here (else stdout)"),
    idle: float = typer.Option(
        5.0, "--idle", min=0.1, max=30, help="The end: no new record for this many seconds"
    ),
) -> None:
    """Seek to --from, then read (and commit) everything up to the end, as JSON Lines.

    The end is when the gateway has nothing more to give for --idle seconds (a long poll)."""
    client = cx.client()
    cx.call("POST", f"/v1/subscriptions/{_p(subscription)}/seek", json={"start": start})
    sink = out.open("w", encoding="utf-8") if out else sys.stdout
    total = 0
    try:
        with cx.progress(f"replaying {subscription}") as advance:
            while True:
                page = client.poll(subscription, max=1000, wait_ms=int(idle * 1000))
                for r in page["records"]:
                    sink.write(json.dumps(r, ensure_ascii=False) + "\n")
                if not page["records"]:
                    break
                client.commit(subscription, page["cursor"])
                total += len(page["records"])
                advance(len(page["records"]))
    finally:
        if out:
            sink.close()
    cx.note(f"replayed {total} record(s)" + (f" into {out}" if out else ""))


@subscribe_app.command("dead-letters")
@connected()
def subscribe_dead_letters(cx: Session, subscription: str) -> None:
    """Webhook deliveries that gave up."""
    cx.emit(cx.call("GET", f"/v1/subscriptions/{_p(subscription)}/dead-letters"))


# -- tail --------------------------------------------------------------------------------
def tail(
    cx: Session,
    topic: str,
    fields: list[str] | None = typer.Option(None, "--field", help="Only these granted fields"),
    start: str = typer.Option(
        "latest", "--from", help="latest (new records only), earliest or an ISO time"
    ),
    count: int | None = typer.Option(None, "--count", "-n", min=1, help="Stop after N records"),
    subscription: str | None = typer.Option(
        None, "--subscription", help="Follow this existing subscription instead"
    ),
) -> None:
    """Follow TOPIC live through the gateway (Ctrl-C stops); granted fields only.

    Without --subscription a temporary subscription is made and closed on exit. Records print
    as a line each (JSON Lines with -o json); the stream reconnects where it stopped."""
    client = cx.client()
    own = subscription is None
    if subscription is None:
        body: dict[str, Any] = {"topic": topic, "start": start}
        if fields:
            body["fields"] = fields
        subscription = str(cx.call("POST", "/v1/subscriptions", json=body)["id"])
    if not cx.json:
        cx.note(f"following {topic} (subscription {subscription}); Ctrl-C stops")
    seen = 0
    last_id: str | None = None
    try:
        while count is None or seen < count:
            try:
                for event in client.stream(subscription, last_event_id=last_id, timeout=60):
                    if event.get("event") == "revoked":
                        cx.fail(f"access to {topic} was revoked or suspended")
                    if event.get("event") == "error":
                        data = event["data"]
                        cx.fail(f"the stream failed: {data.get('detail')} ({data.get('code')})")
                    if event.get("event") != "record":
                        continue
                    last_id = event.get("id") or last_id
                    _print_record(cx, event["data"])
                    seen += 1
                    if count is not None and seen >= count:
                        break
            except httpx.ReadTimeout:
                continue  # keep-alives stopped for a minute: reconnect where we were
    except KeyboardInterrupt:
        cx.note(f"stopped after {seen} record(s)")
    finally:
        if own:
            # best effort, bounded (Ctrl-C must stop promptly): if this fails the
            # subscription stays listed for `subscribe close`
            with contextlib.suppress(ApiError, httpx.HTTPError):
                client.call("DELETE", f"/v1/subscriptions/{_p(subscription)}", timeout=5)


def _print_record(cx: Session, r: dict[str, Any]) -> None:
    if cx.json:
        write_json_line(r)
        return
    head = f"{r['partition']}/{r['offset']}"
    key = f" key={r['key']}" if r.get("key") is not None else ""
    redacted = f" redacted={json.dumps(r['redacted'])}" if r.get("redacted") else ""
    value = json.dumps(r["value"], ensure_ascii=False)
    sys.stdout.write(f"{head}{key} {value}{redacted}\n")
    sys.stdout.flush()


def write_json_line(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    sys.stdout.flush()


tail_command = connected()(tail)
__all__ = ["publish_command", "subscribe_app", "tail_command", "topics_app", "write_json"]

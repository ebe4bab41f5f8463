"""``exchange node``: a county office's store-and-forward node (no Kafka, no JVM)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from cli.common import console, guarded
from node.config import Credentials, NodeConfig, NodeHome

app = typer.Typer(
    help="County node: local outbox forwarded to the league site.", no_args_is_help=True
)

NodeHomeOption = typer.Option(
    None, "--home", help="Node directory (default: $EXCHANGE_NODE_HOME or ./.exchange-node)"
)


def _home(home: Path | None) -> NodeHome:
    return NodeHome(home or Path(os.environ.get("EXCHANGE_NODE_HOME", ".exchange-node")))


@app.command("init")
@guarded
def init(
    gateway: str = typer.Option(..., "--gateway", help="The league site's gateway URL"),
    credentials: Path = typer.Option(
        ...,
        "--credentials",
        help="JSON file with the department's client_id and client_secret (copied, 0600)",
    ),
    topic: list[str] = typer.Option([], "--topic", help="A topic local apps may publish to"),
    subscription: list[str] = typer.Option(
        [], "--subscription", help="A subscription id to pull ahead"
    ),
    bandwidth: int | None = typer.Option(
        None, "--bandwidth", help="Uplink cap for forwarding, bytes/s"
    ),
    max_outbox_bytes: int = typer.Option(
        2 * 1024**3, "--max-outbox-bytes", help="Outbox quota; beyond it publishes get 507"
    ),
    backoff_max: float = typer.Option(30.0, "--backoff-max", help="Longest retry wait (s)"),
    encrypt: bool = typer.Option(
        False, "--encrypt-at-rest", help="AES-256-GCM the stored records, key in outbox.key"
    ),
    home: Path | None = NodeHomeOption,
) -> None:
    """Create (or update) a node's home."""
    h = _home(home)
    creds = Credentials.model_validate(json.loads(credentials.read_text()))
    existing = h.config() if (h.home / "node.json").exists() else None
    config = NodeConfig(
        node_id=existing.node_id if existing else NodeConfig(gateway_url=gateway).node_id,
        gateway_url=gateway,
        publish_topics=list(topic),
        subscriptions=list(subscription),
        bandwidth_bytes_per_s=bandwidth,
        max_outbox_bytes=max_outbox_bytes,
        backoff_max_s=backoff_max,
        encrypt_at_rest=encrypt,
    )
    h.init(config, creds)
    console.print(f"node {config.node_id} in {h.home} → {gateway}", highlight=False)


@app.command("token")
@guarded
def token(
    name: str = typer.Argument(..., help="Local application name"),
    home: Path | None = NodeHomeOption,
) -> None:
    """Issue a bearer token for a local application (printed once, stored hashed)."""
    print(_home(home).add_token(name))


@app.command("run")
@guarded
def run(
    port: int = typer.Option(8090, "--port"),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address"),
    home: Path | None = NodeHomeOption,
) -> None:
    """Serve local applications and forward to the site until stopped."""
    import uvicorn

    from gateway.node_app import create_node_app
    from node.service import Node

    node = Node(_home(home).home)
    console.print(
        f"node {node.config.node_id} on http://{host}:{port} → {node.config.gateway_url}",
        highlight=False,
    )
    uvicorn.run(
        create_node_app(node),
        host=host,
        port=port,
        timeout_keep_alive=75,  # longer than clients' pool expiry: no reset on reuse
        log_level="warning",
        access_log=False,
    )


@app.command("status")
@guarded
def status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable"),
    home: Path | None = NodeHomeOption,
) -> None:
    """Backlog, oldest-record age, last contact and last error (read from the outbox)."""
    from node.service import open_store, status_of

    h = _home(home)
    config = h.config()
    store = open_store(h, config)
    try:
        st = status_of(store, config)
    finally:
        store.close()
    if as_json:
        print(json.dumps(st, indent=2))
        return
    for key in (
        "node",
        "gateway",
        "backlog_records",
        "backlog_bytes",
        "oldest_record_age_s",
        "last_contact",
        "last_contact_age_s",
        "last_error",
        "last_error_at",
        "forwarded_records",
        "replayed_batches",
        "dead_letters",
        "rejected_records",
    ):
        console.print(f"{key:22} {st[key]}", highlight=False)
    for sub, s in st["subscriptions"].items():
        console.print(
            f"subscription {sub}: {s['local_backlog']} held locally, "
            f"{s['prefetched_records']} pulled ahead",
            highlight=False,
        )

"""``exchange up``: broker (unless external), database, gateway; Ctrl-C stops all."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from types import FrameType

import typer
import uvicorn

from cli.common import HomeOption, console, guarded, settings_for
from exchange.errors import ConfigurationError, KafkaUnavailable, NotFound
from exchange.kafka.broker import LocalBroker, port_free
from exchange.kafka.probe import metadata_answers
from exchange.settings import Settings

ADMIN_DEPARTMENT = "exchange-admin"
ADMIN_CLIENT = "exchange-admin"


def write_admin_credentials(settings: Settings, client_id: str, secret: str) -> Path:
    path = settings.resolved_home / "admin-credentials.json"
    body = {
        "client_id": client_id,
        "client_secret": secret,
        "token_url": f"{settings.gateway_url}/oauth/token",
        "gateway_url": settings.gateway_url,
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(body, f, indent=2)
    os.replace(tmp, path)
    return path


def ensure_admin(settings: Settings, identity: object) -> Path:
    """First start: create the admin department and client; later starts keep them."""
    from exchange.identity.service import IdentityService

    assert isinstance(identity, IdentityService)
    path = settings.resolved_home / "admin-credentials.json"
    try:
        identity.get_client(ADMIN_CLIENT)
    except NotFound:
        try:
            identity.get_department(ADMIN_DEPARTMENT)
        except NotFound:
            identity.create_department(ADMIN_DEPARTMENT, "Exchange administration", "region")
        issued = identity.create_client(
            ADMIN_DEPARTMENT,
            "bootstrap admin",
            ["admin", "registry:read", "registry:write"],
            client_id=ADMIN_CLIENT,
        )
        return write_admin_credentials(settings, ADMIN_CLIENT, issued.client_secret)
    if path.exists():
        # Keep the URLs current if the port changed; the secret stays as issued.
        creds = json.loads(path.read_text())
        write_admin_credentials(settings, creds["client_id"], creds["client_secret"])
    return path


def resolve_bootstrap(settings: Settings) -> tuple[str, LocalBroker | None]:
    if settings.kafka_bootstrap:
        if not metadata_answers(settings.kafka_bootstrap, timeout=10):
            raise KafkaUnavailable(f"external Kafka at {settings.kafka_bootstrap} is unreachable")
        return settings.kafka_bootstrap, None
    broker = LocalBroker(settings.resolved_home)
    already = broker.state() is not None
    st = broker.start()
    return st.bootstrap, (None if already else broker)


def check_home(settings: Settings) -> None:
    home = settings.resolved_home
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / ".writable"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigurationError(f"exchange home {home} is not writable: {exc.strerror}") from exc


@guarded
def up(
    home: Path | None = HomeOption,
    port: int | None = typer.Option(None, "--port", help="Gateway port (default 8080)"),
    host: str | None = typer.Option(None, "--host", help="Bind address"),
) -> None:
    """Start the whole system on this machine and print where to reach it."""
    from gateway.app import build_services, create_app

    settings = settings_for(home, port=port, host=host)
    check_home(settings)
    if not port_free(settings.port, settings.host):
        raise ConfigurationError(f"gateway port {settings.port} is already in use")
    bootstrap, started = resolve_bootstrap(settings)
    try:
        svc = build_services(settings, bootstrap)
        creds = ensure_admin(settings, svc.identity)
        app = create_app(svc)
        url = settings.gateway_url
        console.print(f"kafka     bootstrap={bootstrap}", highlight=False)
        console.print(f"gateway   {url}", highlight=False)
        console.print(f"docs      {url}/docs", highlight=False)
        console.print(f"admin     {creds}", highlight=False)
        server = uvicorn.Server(
            uvicorn.Config(
                app, host=settings.host, port=settings.port, log_level="warning", access_log=False
            )
        )

        def _stop(_sig: int, _frame: FrameType | None) -> None:
            server.should_exit = True

        signal.signal(signal.SIGTERM, _stop)
        server.run()
    finally:
        if started is not None:
            started.stop()
        console.print("stopped")

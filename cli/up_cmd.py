"""``exchange up``: broker (unless external), database, gateway; Ctrl-C stops all."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from audit.keys import fingerprint
from cli.common import HomeOption, console, guarded, settings_for
from exchange import logs, metrics, tracing
from exchange.errors import ConfigurationError, KafkaUnavailable, NotFound
from exchange.home import secure_home

if TYPE_CHECKING:  # imported when used: `exchange --help` and friends start fast
    from exchange.kafka.broker import LocalBroker
    from exchange.settings import Settings

ADMIN_DEPARTMENT = "exchange-admin"
ADMIN_CLIENT = "exchange-admin"
ADMIN_FILE = "admin-credentials.json"
# The security officer's line: its own department, client and file, never the admin's.
AUDIT_DEPARTMENT = "exchange-audit"
AUDITOR_CLIENT = "exchange-auditor"
AUDITOR_FILE = "auditor-credentials.json"


def write_admin_credentials(
    settings: Settings, client_id: str, secret: str, name: str = ADMIN_FILE
) -> Path:
    path = settings.resolved_home / name
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


def _ensure_client(
    settings: Settings,
    identity: object,
    dept: tuple[str, str],
    client: tuple[str, str, list[str]],
    file: str,
) -> Path:
    """First start: create the department, the client and its 0600 credential file; later
    starts keep them (only the URLs in the file are refreshed)."""
    from exchange.identity.service import SYSTEM, IdentityService

    assert isinstance(identity, IdentityService)
    path = settings.resolved_home / file
    client_id, name, roles = client
    try:
        identity.get_client(client_id)
    except NotFound:
        if not identity.department_exists(dept[0]):
            identity.create_department(dept[0], dept[1], "region")
        issued = identity.create_client(dept[0], name, roles, client_id=client_id, by=SYSTEM)
        return write_admin_credentials(settings, client_id, issued.client_secret, file)
    if path.exists():
        # Keep the URLs current if the port changed; the secret stays as issued.
        creds = json.loads(path.read_text())
        write_admin_credentials(settings, creds["client_id"], creds["client_secret"], file)
    return path


def ensure_admin(settings: Settings, identity: object) -> Path:
    """The bootstrap admin (``admin-credentials.json``) and, in its own department and file,
    the first auditor (``auditor-credentials.json``): admins cannot mint auditors."""
    ensure_auditor(settings, identity)
    return _ensure_client(
        settings,
        identity,
        (ADMIN_DEPARTMENT, "Exchange administration"),
        (ADMIN_CLIENT, "bootstrap admin", ["admin", "registry:read", "registry:write"]),
        ADMIN_FILE,
    )


def ensure_auditor(settings: Settings, identity: object) -> Path:
    return _ensure_client(
        settings,
        identity,
        (AUDIT_DEPARTMENT, "Exchange audit (security officer)"),
        (AUDITOR_CLIENT, "bootstrap auditor", ["auditor"]),
        AUDITOR_FILE,
    )


# The first people of the console, one per duty (an admin cannot create an auditor person).
CONSOLE_PEOPLE = (
    ("admin", ADMIN_DEPARTMENT, ["admin", "registry:read", "registry:write"], "console-admin.json"),
    ("security-officer", AUDIT_DEPARTMENT, ["auditor"], "console-auditor.json"),
)


def ensure_console_people(settings: Settings, people: object) -> list[Path]:
    """First start: the console's first admin and security officer, each with a random
    password in a 0600 file (they enrol their TOTP at the first sign-in). Later starts leave
    them alone: a deleted file is not re-created, a changed password is not reset."""
    import secrets

    from exchange.identity.people import People
    from exchange.identity.service import SYSTEM

    assert isinstance(people, People)
    written = []
    for login, dept, roles, file in CONSOLE_PEOPLE:
        path = settings.resolved_home / file
        if not people.exists(login):
            password = secrets.token_urlsafe(18)
            people.create(dept, login, login.replace("-", " ").title(), password, roles, by=SYSTEM)
            body = {
                "login": login,
                "password": password,
                "console": f"{settings.gateway_url}/console",
            }
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(body, f, indent=2)
            os.replace(tmp, path)
        written.append(path)
    return written


def resolve_bootstrap(settings: Settings) -> tuple[str, LocalBroker | None, bool]:
    """The bootstrap address, the embedded broker (None: external Kafka) and whether this
    call started it."""
    from exchange.kafka.broker import LocalBroker
    from exchange.kafka.probe import metadata_answers

    if settings.kafka_bootstrap:
        if not metadata_answers(settings.kafka_bootstrap, settings.kafka_security(), timeout=10):
            raise KafkaUnavailable(
                f"external Kafka at {settings.kafka_bootstrap} is unreachable or refused "
                "the configured credentials (EXCHANGE_KAFKA_SECURITY_PROTOCOL, _SASL_*)"
            )
        return settings.kafka_bootstrap, None, False
    broker = LocalBroker(settings.resolved_home)
    already = broker.state() is not None
    st = broker.start()
    return st.bootstrap, broker, not already


def check_home(settings: Settings) -> None:
    home = settings.resolved_home
    secure_home(home)
    try:
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
    import uvicorn

    from exchange.kafka.broker import port_free
    from exchange.kafka.supervisor import BrokerSupervisor
    from gateway.app import build_services, create_app

    settings = settings_for(home, port=port, host=host)
    logs.configure(settings.log_level, settings.log_format)
    if settings.otlp_endpoint:
        tracing.configure(settings.otlp_endpoint)
    check_home(settings)
    if not port_free(settings.port, settings.host):
        raise ConfigurationError(f"gateway port {settings.port} is already in use")
    bootstrap, broker, started = resolve_bootstrap(settings)
    supervisor = None
    if broker is not None:  # the embedded broker: restarted if it dies
        supervisor = BrokerSupervisor(broker)
        supervisor.start()
    try:
        svc = build_services(
            settings, bootstrap, broker_status=supervisor.status if supervisor else None
        )
        creds = ensure_admin(settings, svc.identity)
        admin_person, officer_person = ensure_console_people(settings, svc.people)
        app = create_app(svc)
        url = settings.gateway_url
        if settings.metrics_port is not None:
            metrics.serve(settings.metrics_port, settings.metrics_host)
            where = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
            console.print(f"metrics   {where}", highlight=False)
        console.print(f"kafka     bootstrap={bootstrap}", highlight=False)
        console.print(f"gateway   {url}", highlight=False)
        console.print(f"docs      {url}/docs", highlight=False)
        console.print(f"admin     {creds}", highlight=False)
        auditor = settings.resolved_home / AUDITOR_FILE
        console.print(f"auditor   {auditor} (hand to the security officer)", highlight=False)
        # Officers pin this key in the console (it checks proofs in the browser against it).
        key = svc.audit_review.signer.verifier.encode()
        console.print(f"audit key {key}", highlight=False)
        console.print(f"          fingerprint {fingerprint(key)}", highlight=False)
        console.print(f"console   {url}/console", highlight=False)
        console.print(
            f"          first sign-in: login 'admin', password in {admin_person} "
            f"(security officer: {officer_person}); both enrol a TOTP app on first sign-in",
            highlight=False,
        )
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                timeout_keep_alive=int(settings.keep_alive_s),
                log_level="warning",
                access_log=False,  # gateway.observe writes one access line per request
                log_config=None,  # the handlers logs.configure installed
            )
        )

        def _stop(_sig: int, _frame: FrameType | None) -> None:
            server.should_exit = True

        signal.signal(signal.SIGTERM, _stop)
        server.run()
    finally:
        if supervisor is not None:
            supervisor.stop()
        if broker is not None and started:
            broker.stop()
        console.print("stopped")

"""``exchange catalog|agreements|consents``: the consent package's HTTP API from the shell.

Credentials: ``--client-id``/``--client-secret`` (or ``EXCHANGE_CLIENT_ID``/
``EXCHANGE_CLIENT_SECRET``), else ``--credentials FILE``, else the bootstrap admin's
``$EXCHANGE_HOME/admin-credentials.json``. The gateway URL comes from ``--url``/
``EXCHANGE_URL`` or the credentials file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from cli.common import HomeOption, console, err_console, settings_for
from exchange.client import ApiError, ExchangeClient
from exchange.errors import ConfigurationError, ExchangeError

catalog_app = typer.Typer(help="Browse the data catalog.", no_args_is_help=True)
agreements_app = typer.Typer(help="Sharing agreements between departments.", no_args_is_help=True)
consents_app = typer.Typer(help="Data-subject consents.", no_args_is_help=True)
GROUPS = (("catalog", catalog_app), ("agreements", agreements_app), ("consents", consents_app))

UrlOpt = typer.Option(None, "--url", envvar="EXCHANGE_URL", help="Gateway URL")
IdOpt = typer.Option(None, "--client-id", envvar="EXCHANGE_CLIENT_ID")
SecretOpt = typer.Option(None, "--client-secret", envvar="EXCHANGE_CLIENT_SECRET")
CredsOpt = typer.Option(None, "--credentials", help="JSON file with client_id/client_secret")


class Conn:
    """The connection options every command takes, resolved lazily into a client."""

    def __init__(
        self,
        home: Path | None,
        url: str | None,
        client_id: str | None,
        secret: str | None,
        creds: Path | None,
    ) -> None:
        self.home, self.url, self.client_id, self.secret, self.creds = (
            home,
            url,
            client_id,
            secret,
            creds,
        )

    def client(self) -> ExchangeClient:
        url, cid, secret = self.url, self.client_id, self.secret
        if not (cid and secret):
            path = self.creds or settings_for(self.home).resolved_home / "admin-credentials.json"
            if not path.exists():
                raise ConfigurationError(
                    f"no credentials: pass --client-id/--client-secret or {path}"
                )
            data = json.loads(path.read_text())
            cid, secret = data["client_id"], data["client_secret"]
            url = url or data.get("gateway_url")
        if not url:
            raise ConfigurationError("no gateway URL: pass --url or set EXCHANGE_URL")
        return ExchangeClient(url, cid, secret)


@contextmanager
def _api(conn: Conn) -> Iterator[ExchangeClient]:
    try:
        with conn.client() as c:
            yield c
    except ApiError as exc:
        body = exc.body if isinstance(exc.body, dict) else {"detail": str(exc.body)}
        err_console.print(
            f"[bold red]error:[/] HTTP {exc.status} {body.get('code', '')}: {body.get('detail')}",
            highlight=False,
        )
        raise typer.Exit(1) from None
    except ExchangeError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(1) from None


def _run(conn: Conn, fn: Callable[[ExchangeClient], Any]) -> None:
    with _api(conn) as c:
        console.print_json(json.dumps(fn(c)))


def _conn(
    home: Path | None, url: str | None, cid: str | None, secret: str | None, creds: Path | None
) -> Conn:
    return Conn(home, url, cid, secret, creds)


# -- catalog -----------------------------------------------------------------------------
@catalog_app.command("list")
def catalog_list(
    q: str | None = typer.Option(None, "--q", help="Text in name, title or description"),
    dept: str | None = typer.Option(None, "--dept"),
    share_type: str | None = typer.Option(None, "--share-type"),
    home: Path | None = HomeOption,
    url: str | None = UrlOpt,
    client_id: str | None = IdOpt,
    client_secret: str | None = SecretOpt,
    credentials: Path | None = CredsOpt,
) -> None:
    """Search the catalog."""
    params = {k: v for k, v in {"q": q, "dept": dept, "share_type": share_type}.items() if v}
    conn = _conn(home, url, client_id, client_secret, credentials)
    _run(conn, lambda c: c.call("GET", "/v1/catalog", params=params))


@catalog_app.command("show")
def catalog_show(
    topic: str,
    home: Path | None = HomeOption,
    url: str | None = UrlOpt,
    client_id: str | None = IdOpt,
    client_secret: str | None = SecretOpt,
    credentials: Path | None = CredsOpt,
) -> None:
    """One catalog entry with its fields' classification."""
    conn = _conn(home, url, client_id, client_secret, credentials)
    _run(conn, lambda c: c.call("GET", f"/v1/catalog/{topic}"))


@catalog_app.command("asyncapi")
def catalog_asyncapi(
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file"),
    home: Path | None = HomeOption,
    url: str | None = UrlOpt,
    client_id: str | None = IdOpt,
    client_secret: str | None = SecretOpt,
    credentials: Path | None = CredsOpt,
) -> None:
    """Export the catalog as an AsyncAPI 3.0 document."""
    conn = _conn(home, url, client_id, client_secret, credentials)
    with _api(conn) as c:
        doc = c.call("GET", "/v1/catalog/asyncapi")
    if output is None:
        console.print_json(json.dumps(doc))
    else:
        output.write_text(json.dumps(doc, indent=2))
        console.print(f"wrote {output}")


# -- agreements --------------------------------------------------------------------------
@agreements_app.command("list")
def agreements_list(
    topic: str | None = typer.Option(None, "--topic"),
    status: str | None = typer.Option(None, "--status"),
    overdue: bool = typer.Option(False, "--overdue", help="Only requests past their deadline"),
    home: Path | None = HomeOption,
    url: str | None = UrlOpt,
    client_id: str | None = IdOpt,
    client_secret: str | None = SecretOpt,
    credentials: Path | None = CredsOpt,
) -> None:
    """Agreements the caller may see (admin and auditor: all)."""
    params: dict[str, Any] = {k: v for k, v in {"topic": topic, "status": status}.items() if v}
    if overdue:
        params["overdue"] = "true"
    conn = _conn(home, url, client_id, client_secret, credentials)
    _run(conn, lambda c: c.call("GET", "/v1/agreements", params=params))


@agreements_app.command("show")
def agreements_show(
    agreement_id: str,
    home: Path | None = HomeOption,
    url: str | None = UrlOpt,
    client_id: str | None = IdOpt,
    client_secret: str | None = SecretOpt,
    credentials: Path | None = CredsOpt,
) -> None:
    conn = _conn(home, url, client_id, client_secret, credentials)
    _run(conn, lambda c: c.call("GET", f"/v1/agreements/{agreement_id}"))


@agreements_app.command("request")
def agreements_request(
    topic: str = typer.Option(..., "--topic"),
    fields: list[str] = typer.Option(..., "--field", help="Field path; repeat for more"),
    purpose: str = typer.Option(..., "--purpose"),
    valid_until: str = typer.Option(..., "--valid-until", help="ISO-8601 date-time"),
    valid_from: str | None = typer.Option(None, "--valid-from"),
    legal_basis: str | None = typer.Option(None, "--legal-basis"),
    requires_consent: bool = typer.Option(False, "--requires-subject-consent"),
    home: Path | None = HomeOption,
    url: str | None = UrlOpt,
    client_id: str | None = IdOpt,
    client_secret: str | None = SecretOpt,
    credentials: Path | None = CredsOpt,
) -> None:
    """Ask the topic's owner for access (role subscriber)."""
    body = {
        "topic": topic,
        "fields": fields,
        "purpose": purpose,
        "legal_basis": legal_basis,
        "valid_from": valid_from,
        "valid_until": valid_until,
        "requires_subject_consent": requires_consent,
    }
    conn = _conn(home, url, client_id, client_secret, credentials)
    _run(conn, lambda c: c.call("POST", "/v1/agreements", json=body))


@agreements_app.command("approve")
def agreements_approve(
    agreement_id: str,
    fields: list[str] | None = typer.Option(None, "--field", help="Narrow to these fields"),
    home: Path | None = HomeOption,
    url: str | None = UrlOpt,
    client_id: str | None = IdOpt,
    client_secret: str | None = SecretOpt,
    credentials: Path | None = CredsOpt,
) -> None:
    """Approve a request (the owner's steward), optionally narrowing its fields."""
    body = {"fields": fields} if fields else {}
    conn = _conn(home, url, client_id, client_secret, credentials)
    _run(conn, lambda c: c.call("POST", f"/v1/agreements/{agreement_id}/approve", json=body))


def _decision(action: str, needs_reason: bool) -> Callable[..., None]:
    def command(
        agreement_id: str,
        reason: str | None = typer.Option(None, "--reason"),
        home: Path | None = HomeOption,
        url: str | None = UrlOpt,
        client_id: str | None = IdOpt,
        client_secret: str | None = SecretOpt,
        credentials: Path | None = CredsOpt,
    ) -> None:
        if needs_reason and not reason:
            raise typer.BadParameter("--reason is required", param_hint="--reason")
        body = {"reason": reason} if reason else None
        conn = _conn(home, url, client_id, client_secret, credentials)
        path = f"/v1/agreements/{agreement_id}/{action}"
        _run(conn, lambda c: c.call("POST", path, json=body))

    command.__doc__ = f"{action.title()} an agreement (the owner's steward)."
    return command


for _action, _needs in (("reject", True), ("suspend", False), ("revoke", False)):
    agreements_app.command(_action)(_decision(_action, _needs))


@agreements_app.command("resume")
def agreements_resume(
    agreement_id: str,
    home: Path | None = HomeOption,
    url: str | None = UrlOpt,
    client_id: str | None = IdOpt,
    client_secret: str | None = SecretOpt,
    credentials: Path | None = CredsOpt,
) -> None:
    """Resume a suspended agreement (the owner's steward)."""
    conn = _conn(home, url, client_id, client_secret, credentials)
    _run(conn, lambda c: c.call("POST", f"/v1/agreements/{agreement_id}/resume"))


# -- consents ----------------------------------------------------------------------------
@consents_app.command("record")
def consents_record(
    subject: str = typer.Option(..., "--subject", help="Data subject reference"),
    consumer: str = typer.Option(..., "--consumer", help="Department allowed to read"),
    topic: str = typer.Option(..., "--topic"),
    purpose: str = typer.Option(..., "--purpose"),
    valid_until: str = typer.Option(..., "--valid-until", help="ISO-8601 date-time"),
    fields: list[str] | None = typer.Option(None, "--field", help="Limit to these fields"),
    home: Path | None = HomeOption,
    url: str | None = UrlOpt,
    client_id: str | None = IdOpt,
    client_secret: str | None = SecretOpt,
    credentials: Path | None = CredsOpt,
) -> None:
    """Record a subject's consent (role consent_registrar); prints the signed artefact."""
    body = {
        "subject": subject,
        "consumer": consumer,
        "topic": topic,
        "purpose": purpose,
        "fields": fields or [],
        "valid_until": valid_until,
    }
    conn = _conn(home, url, client_id, client_secret, credentials)
    _run(conn, lambda c: c.call("POST", "/v1/consents", json=body))


def _consent_call(method: str, suffix: str, doc: str) -> Callable[..., None]:
    def command(
        consent_id: str,
        home: Path | None = HomeOption,
        url: str | None = UrlOpt,
        client_id: str | None = IdOpt,
        client_secret: str | None = SecretOpt,
        credentials: Path | None = CredsOpt,
    ) -> None:
        conn = _conn(home, url, client_id, client_secret, credentials)
        _run(conn, lambda c: c.call(method, f"/v1/consents/{consent_id}{suffix}"))

    command.__doc__ = doc
    return command


for _name, _method, _suffix, _doc in (
    ("show", "GET", "", "The current version of a consent with its artefact."),
    ("versions", "GET", "/versions", "Every version of a consent."),
    ("revoke", "POST", "/revoke", "Revoke a consent (its registrar)."),
    ("pause", "POST", "/pause", "Pause a consent (its registrar)."),
    ("resume", "POST", "/resume", "Resume a paused consent (its registrar)."),
):
    consents_app.command(_name)(_consent_call(_method, _suffix, _doc))


@consents_app.command("verify")
def consents_verify(
    artefact: str = typer.Argument(..., help="Compact JWS, or @FILE"),
    home: Path | None = HomeOption,
    url: str | None = UrlOpt,
    client_id: str | None = IdOpt,
    client_secret: str | None = SecretOpt,
    credentials: Path | None = CredsOpt,
) -> None:
    """Check an artefact's signature against the gateway's JWKS and print its claims."""
    from consent.signing import verify_artefact  # the CLI is a composition root

    token = Path(artefact[1:]).read_text().strip() if artefact.startswith("@") else artefact
    conn = _conn(home, url, client_id, client_secret, credentials)
    with _api(conn) as c:
        jwks = c.call("GET", "/v1/consents/jwks")
        console.print_json(json.dumps(verify_artefact(token, jwks)))

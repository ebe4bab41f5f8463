"""``exchange schema register|check|show``: the registry over HTTP, as any client would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import typer

from cli.common import HomeOption, console, err_console, settings_for
from exchange.client import ApiError, ExchangeClient

app = typer.Typer(help="Register, check and show Avro schemas.", no_args_is_help=True)

UrlOption = typer.Option(None, "--url", help="Gateway URL (default: from admin-credentials.json)")
IdOption = typer.Option(None, "--client-id", help="OAuth client id (default: the admin client)")
SecretOption = typer.Option(
    None, "--client-secret", help="OAuth client secret", envvar="EXCHANGE_CLIENT_SECRET"
)


def connect(
    url: str | None, client_id: str | None, secret: str | None, home: Path | None
) -> ExchangeClient:
    if url is None or client_id is None or secret is None:
        path = settings_for(home).resolved_home / "admin-credentials.json"
        try:
            creds: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            fail(f"no --url/--client-id/--client-secret and no readable {path}")
        url = url or creds.get("gateway_url")
        client_id = client_id or creds.get("client_id")
        secret = secret or creds.get("client_secret")
    if not url or not client_id or not secret:
        fail("gateway URL and client credentials are required")
    return ExchangeClient(url, client_id, secret)


def fail(message: str) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)


def call(client: ExchangeClient, method: str, path: str, **kwargs: Any) -> Any:
    try:
        return client.call(method, f"/registry{path}", **kwargs)
    except ApiError as exc:
        body = exc.body if isinstance(exc.body, dict) else {"message": str(exc.body)}
        fail(f"{body.get('message', exc)} (HTTP {exc.status}, code {body.get('error_code')})")


def read_schema(file: Path) -> str:
    try:
        text = file.read_text()
        json.loads(text)
    except (OSError, ValueError) as exc:
        fail(f"cannot read {file} as JSON: {exc}")
    return text


@app.command()
def register(
    subject: str,
    file: Path,
    url: str | None = UrlOption,
    client_id: str | None = IdOption,
    client_secret: str | None = SecretOption,
    home: Path | None = HomeOption,
) -> None:
    """Register FILE.avsc under SUBJECT; prints the schema id."""
    body = {"schema": read_schema(file)}
    path = f"/subjects/{quote(subject, safe='')}/versions"
    out = call(connect(url, client_id, client_secret, home), "POST", path, json=body)
    console.print(f"id={out['id']}", highlight=False)


@app.command()
def check(
    subject: str,
    file: Path,
    url: str | None = UrlOption,
    client_id: str | None = IdOption,
    client_secret: str | None = SecretOption,
    home: Path | None = HomeOption,
) -> None:
    """Is FILE.avsc compatible with SUBJECT's history? Exit 1 and say why if not."""
    body = {"schema": read_schema(file)}
    with connect(url, client_id, client_secret, home) as client:
        path = f"/compatibility/subjects/{quote(subject, safe='')}/versions/latest"
        out = call(client, "POST", path, json=body, params={"verbose": "true"})
    if out["is_compatible"]:
        console.print("compatible")
        return
    for message in out.get("messages", []):
        err_console.print(message, highlight=False, markup=False)
    fail("incompatible")


@app.command()
def show(
    subject: str,
    version: str = typer.Argument("latest"),
    url: str | None = UrlOption,
    client_id: str | None = IdOption,
    client_secret: str | None = SecretOption,
    home: Path | None = HomeOption,
) -> None:
    """Print a version of SUBJECT (default: latest) and the classification of its fields."""
    with connect(url, client_id, client_secret, home) as client:
        name = quote(subject, safe="")  # a subject may hold "/" or any other character
        v = call(client, "GET", f"/subjects/{name}/versions/{version}")
        fields = call(client, "GET", f"/subjects/{name}/versions/{v['version']}/fields")
    console.print(f"subject={v['subject']} version={v['version']} id={v['id']}", highlight=False)
    console.print_json(v["schema"])
    for f in fields:
        mark = " data_subject" if f["data_subject"] else ""
        console.print(f"  {f['path']}: {f['classification']}{mark}", highlight=False)

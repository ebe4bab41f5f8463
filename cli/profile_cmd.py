"""``exchange login|logout|whoami`` and ``exchange profiles``: who the CLI acts as."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import typer

from cli.connect import (
    EXIT_USAGE,
    Output,
    OutputOpt,
    Session,
    connected,
    read_credentials,
    render,
    rendered_errors,
    write_json,
)
from exchange.profiles import Profile, ProfileStore, config_path

profiles_app = typer.Typer(help="Saved connection profiles.", no_args_is_help=True)


def login(
    profile: str = typer.Option(
        ..., "--profile", "-p", envvar="EXCHANGE_PROFILE", help="Name to save it under"
    ),
    url: str | None = typer.Option(None, "--url", envvar="EXCHANGE_URL", help="Gateway URL"),
    client_id: str | None = typer.Option(None, "--client-id", envvar="EXCHANGE_CLIENT_ID"),
    client_secret: str | None = typer.Option(
        None,
        "--client-secret",
        envvar="EXCHANGE_CLIENT_SECRET",
        help="Prompted for (hidden) when not given",
    ),
    credentials: Path | None = typer.Option(
        None,
        "--credentials",
        help="A JSON credentials file (e.g. $EXCHANGE_HOME/admin-credentials.json)",
    ),
    default: bool = typer.Option(False, "--default", help="Use it when no profile is named"),
    check: bool = typer.Option(True, "--check/--no-check", help="Sign in once to check"),
    output: Output = OutputOpt,
) -> None:
    """Save a gateway URL and client credentials as a named profile (file mode 0600)."""
    with rendered_errors(as_json=output == Output.json):
        if credentials is not None:
            data = read_credentials(credentials)
            url = url or data.get("gateway_url")
            client_id = client_id or data["client_id"]
            client_secret = client_secret or data["client_secret"]
        if not url or not client_id:
            Session().fail(
                "login needs --url and --client-id (or --credentials FILE)", code=EXIT_USAGE
            )
        if not client_secret:
            client_secret = typer.prompt(f"client secret of {client_id}", hide_input=True)
        p = Profile(profile, url.rstrip("/"), client_id, client_secret)
        store = ProfileStore.load()
        store.put(p, make_default=default)  # checks the name before any network call
        claims: dict[str, object] = {}
        if check:
            cx = Session(
                url=p.url, client_id=p.client_id, client_secret=p.client_secret, output=output
            )
            with rendered_errors(cx):
                try:
                    claims = token_claims(cx.client().token())
                finally:
                    cx.close()
        store.save()
        summary = {
            "profile": p.name,
            "url": p.url,
            "client_id": p.client_id,
            "department": claims.get("dept"),
            "roles": str(claims.get("scope", "")).split() if claims else None,
            "default": store.default == p.name,
            "file": str(store.path),
        }
        if output == Output.json:
            write_json(summary)
        else:
            render(summary)


def logout(
    profile: str = typer.Option(..., "--profile", "-p", envvar="EXCHANGE_PROFILE"),
) -> None:
    """Forget a saved profile (its secret is removed from the file)."""
    with rendered_errors():
        store = ProfileStore.load()
        store.remove(profile)
        store.save()
        typer.echo(f"removed profile {profile} from {store.path}")


@connected()
def whoami(cx: Session) -> None:
    """Sign in and show the client, its department and roles (from the access token)."""
    t = cx.target()
    claims = token_claims(cx.client().token())
    cx.emit(
        {
            "url": t.url,
            "client_id": t.client_id,
            "department": claims.get("dept"),
            "roles": str(claims.get("scope", "")).split(),
            "credentials": t.source,
        }
    )


@connected()
def status(cx: Session) -> None:
    """Is the gateway up and ready (its database, Kafka, KMS)? No credentials needed with
    --url; exit 1 when it is not ready."""
    import httpx

    url = (cx.url or cx.target().url).rstrip("/")
    r = httpx.get(f"{url}/readyz", timeout=10)
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    cx.emit({"url": url, **body} if isinstance(body, dict) else {"url": url})
    if r.status_code != 200:
        cx.fail(f"the gateway at {url} is not ready (HTTP {r.status_code})")


def token_claims(token: str) -> dict[str, object]:
    """The payload of our own access token, for display only (the gateway verifies it)."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@profiles_app.command("list")
def profiles_list(output: Output = OutputOpt) -> None:
    """Saved profiles (never their secrets)."""
    with rendered_errors(as_json=output == Output.json):
        store = ProfileStore.load()
        rows = [
            {"profile": p.name, "url": p.url, "client_id": p.client_id,
             "default": p.name == store.default}
            for p in sorted(store.profiles.values(), key=lambda p: p.name)
        ]  # fmt: skip
        if output == Output.json:
            write_json(rows)
        else:
            render(rows, title=str(store.path))


@profiles_app.command("use")
def profiles_use(name: str) -> None:
    """Make NAME the default profile."""
    with rendered_errors():
        store = ProfileStore.load()
        store.put(store.get(name), make_default=True)
        store.save()
        typer.echo(f"default profile: {name}")


@profiles_app.command("path")
def profiles_path() -> None:
    """Where profiles are stored ($EXCHANGE_CONFIG or $XDG_CONFIG_HOME/exchange)."""
    typer.echo(str(config_path()))

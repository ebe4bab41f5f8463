"""How every ``exchange`` command that talks to the gateway says who it is, prints and fails.

Writing a command (``exchange import`` and every group in ``cli/`` do exactly this)::

    from cli.connect import Session, connected

    @app.command()
    @connected()                    # adds the shared options below to the command
    def show(topic: str, cx: Session) -> None:
        entry = cx.call("GET", f"/v1/topics/{topic}")   # token fetched and refreshed by the SDK
        cx.emit(entry)                                  # a table, or JSON with --output json
        with cx.progress("publishing", total=n) as advance:
            ...; advance(100)                           # a bar on a terminal, silent otherwise

Shared options (each also read from the environment, flags win):

    --profile NAME        EXCHANGE_PROFILE        a profile saved by `exchange login`
    --url URL             EXCHANGE_URL            overrides the profile's URL
    --client-id ID        EXCHANGE_CLIENT_ID      with the secret: no profile needed
    --client-secret S     EXCHANGE_CLIENT_SECRET
    --home DIR            EXCHANGE_HOME           fallback: DIR/admin-credentials.json
    --output table|json   EXCHANGE_OUTPUT         human tables (default) or JSON for scripts

Who you are, first match wins: ``--client-id`` + ``--client-secret`` (URL from ``--url``, the
profile or the home); else the named profile (unknown: an error listing the known ones); else
an explicit ``--home``'s credential file (``admin-credentials.json``, or the file named by
``connected(credentials=...)``, e.g. the auditor's); else the profiles file's default
profile; else ``./.exchange``'s credential file; else an error saying how to log in.

Errors: anything a command raises among ``ApiError`` (any 4xx/5xx, with a 422's per-field
errors listed), ``httpx`` transport errors, ``ExchangeError`` (ours) and missing/unreadable
files becomes one ``error: ...`` line (plus field errors and a ``hint:``) on stderr — a JSON
object ``{"error": ...}`` with ``--output json`` — never a traceback. ``cx.fail(msg, hint)``
does the same for a command's own checks. Exit codes: 1 the request or check failed, 2 bad
usage or configuration, 3 the gateway cannot be reached, 4 the credentials were refused.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn, TypeVar, get_type_hints

import httpx
import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from exchange.client import ApiError, AuthenticationFailed, ExchangeClient
from exchange.errors import ConfigurationError, ExchangeError
from exchange.profiles import ProfileStore

ADMIN_FILE = "admin-credentials.json"
AUDITOR_FILE = "auditor-credentials.json"

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH = 1, 2, 3, 4


class Output(StrEnum):
    table = "table"
    json = "json"


def _wide() -> int | None:
    """Tables piped to a file or a test are not cut at 80 columns."""
    return None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "0") or 0) or 200


def stdout_console() -> Console:
    return Console(soft_wrap=False, width=_wide(), highlight=False)


def stderr_console() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


@dataclass(frozen=True)
class Target:
    """Where to connect and as whom; ``source`` says where the credentials came from."""

    url: str
    client_id: str
    client_secret: str
    source: str


class Failure(Exception):
    """A command's own expected failure: rendered like an API error, exit ``code``."""

    def __init__(self, message: str, hint: str | None = None, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message, self.hint, self.code = message, hint, code


@dataclass
class Session:
    """The resolved shared options of one command run, and its client (opened lazily)."""

    profile: str | None = None
    url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    home: Path | None = None
    output: Output = Output.table
    credentials: str = ADMIN_FILE
    _client: ExchangeClient | None = field(default=None, repr=False)
    _target: Target | None = field(default=None, repr=False)

    # -- who ----------------------------------------------------------------------------
    @property
    def json(self) -> bool:
        return self.output == Output.json

    def target(self) -> Target:
        if self._target is None:
            self._target = self._resolve()
        return self._target

    def _resolve(self) -> Target:
        if self.client_id and self.client_secret:
            url = self.url or self._profile_url() or self._home_url()
            if not url:
                raise Failure(
                    "no gateway URL for --client-id/--client-secret",
                    "pass --url or set EXCHANGE_URL",
                    EXIT_USAGE,
                )
            return Target(url, self.client_id, self.client_secret, "--client-id/--client-secret")
        if self.client_id or self.client_secret:
            raise Failure(
                "--client-id and --client-secret go together (or EXCHANGE_CLIENT_ID and "
                "EXCHANGE_CLIENT_SECRET)",
                code=EXIT_USAGE,
            )
        if self.profile:
            p = ProfileStore.load().get(self.profile)
            return Target(self.url or p.url, p.client_id, p.client_secret, f"profile {p.name!r}")
        explicit_home = self.home or os.environ.get("EXCHANGE_HOME")
        if explicit_home:
            return self._from_file(self._home() / self.credentials)
        store = ProfileStore.load()
        if store.default:
            p = store.get(store.default)
            return Target(self.url or p.url, p.client_id, p.client_secret, f"profile {p.name!r}")
        path = self._home() / self.credentials
        if path.exists():
            return self._from_file(path)
        raise Failure(
            "not logged in: no profile, no --client-id/--client-secret and no "
            f"{self.credentials} in {self._home()}",
            "run `exchange login --profile NAME --url URL --client-id ID`, or set "
            "EXCHANGE_URL, EXCHANGE_CLIENT_ID and EXCHANGE_CLIENT_SECRET",
            EXIT_USAGE,
        )

    def _home(self) -> Path:
        home = self.home or Path(os.environ.get("EXCHANGE_HOME") or "./.exchange")
        return home.expanduser().resolve()

    def _from_file(self, path: Path) -> Target:
        data = read_credentials(path)
        url = self.url or data.get("gateway_url")
        if not url:
            raise Failure(f"{path} names no gateway_url", "pass --url", EXIT_USAGE)
        return Target(url, data["client_id"], data["client_secret"], str(path))

    def _profile_url(self) -> str | None:
        return ProfileStore.load().get(self.profile).url if self.profile else None

    def _home_url(self) -> str | None:
        path = self._home() / self.credentials
        if not path.exists():
            return None
        url = read_credentials(path).get("gateway_url")
        return str(url) if url else None

    # -- talking ------------------------------------------------------------------------
    def client(self) -> ExchangeClient:
        if self._client is None:
            t = self.target()
            self._client = ExchangeClient(t.url, t.client_id, t.client_secret)
        return self._client

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call as this session's client; errors are rendered by ``connected``."""
        return self.client().call(method, path, **kwargs)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- printing -----------------------------------------------------------------------
    def emit(
        self, data: Any, columns: Sequence[str] | None = None, title: str | None = None
    ) -> None:
        """Print ``data``: JSON with ``--output json``; otherwise a table (a list of objects:
        one row each, ``columns`` picks and orders them), key/value lines (one object) or
        the text itself."""
        if self.json:
            write_json(data)
            return
        render(data, columns, title)

    def note(self, text: str) -> None:
        """A human remark (stderr, never in JSON output)."""
        stderr_console().print(text, markup=False)

    @contextmanager
    def progress(self, description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
        """A progress bar on stderr when it is a terminal; yields ``advance(n=1, total=None)``."""
        bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=stderr_console(),
            transient=True,
            disable=not sys.stderr.isatty(),
        )
        with bar:
            task = bar.add_task(description, total=total)

            def advance(n: int = 1, total: int | None = None) -> None:
                if total is not None:
                    bar.update(task, total=total)
                bar.advance(task, n)

            yield advance

    def fail(self, message: str, hint: str | None = None, code: int = EXIT_FAILED) -> NoReturn:
        raise Failure(message, hint, code)


def read_credentials(path: Path) -> dict[str, Any]:
    """A credentials JSON file (``admin-credentials.json``, or a saved client secret)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise Failure(f"no credentials file {path}", code=EXIT_USAGE) from None
    except (OSError, ValueError) as exc:
        raise Failure(f"cannot read credentials file {path}: {exc}", code=EXIT_USAGE) from None
    if not isinstance(data, dict) or not data.get("client_id") or not data.get("client_secret"):
        raise Failure(f"{path} needs client_id and client_secret", code=EXIT_USAGE)
    return data


# -- rendering ---------------------------------------------------------------------------
def write_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def render(data: Any, columns: Sequence[str] | None = None, title: str | None = None) -> None:
    out = stdout_console()
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        if not data:
            stderr_console().print("(none)", style="dim")
            return
        cols = list(columns or _keys(data))
        table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, header_style="bold")
        for c in cols:
            table.add_column(c, overflow="fold")
        for row in data:
            table.add_row(*(cell(row.get(c)) for c in cols))
        out.print(table)
    elif isinstance(data, dict):
        table = Table(title=title, box=None, show_header=False, pad_edge=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for k in columns or list(data):
            table.add_row(k, cell(data.get(k)))
        out.print(table)
    else:
        out.print(cell(data), markup=False)


def _keys(rows: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        seen.update(dict.fromkeys(r))
    return list(seen)


# -- errors ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rendered:
    message: str
    code: int = EXIT_FAILED
    hint: str | None = None
    details: tuple[str, ...] = ()
    status: int | None = None
    error_code: str | None = None


def describe(exc: BaseException, cx: Session | None = None) -> Rendered | None:
    """The one-line story of an expected failure, or None for a bug (left to raise)."""
    where = _where(cx)
    if isinstance(exc, Failure):
        return Rendered(exc.message, exc.code, exc.hint)
    if isinstance(exc, AuthenticationFailed):
        return _auth_failed(exc, cx)
    if isinstance(exc, ApiError):
        return _api(exc)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return Rendered(
            f"bad gateway URL{where}: {exc}",
            EXIT_USAGE,
            "a gateway URL looks like http://127.0.0.1:8080 (check --url, EXCHANGE_URL or "
            "the profile)",
        )
    if isinstance(exc, httpx.TimeoutException):
        return Rendered(f"the gateway{where} did not answer in time", EXIT_UNREACHABLE)
    if isinstance(exc, httpx.TransportError):
        return Rendered(
            f"cannot reach the gateway{where}: {exc or type(exc).__name__}",
            EXIT_UNREACHABLE,
            "is it running? (`exchange up` starts one); check --url, EXCHANGE_URL or the "
            "profile's url",
        )
    if isinstance(exc, ConfigurationError):
        return Rendered(exc.message, EXIT_USAGE)
    if isinstance(exc, ExchangeError):
        return Rendered(exc.message, EXIT_FAILED, error_code=exc.code)
    if isinstance(exc, FileNotFoundError | IsADirectoryError | PermissionError):
        return Rendered(f"{exc.strerror}: {exc.filename}", EXIT_FAILED)
    return None


def _where(cx: Session | None) -> str:
    if cx is None:
        return ""
    url = cx._target.url if cx._target is not None else cx.url  # --url before sign-in
    return f" at {url}" if url else ""


def _auth_failed(exc: AuthenticationFailed, cx: Session | None) -> Rendered:
    source = cx._target.source if cx is not None and cx._target is not None else None
    of = f" (from {source})" if source else ""
    if exc.status == 401:
        return Rendered(
            f"the gateway refused the credentials of client {exc.client_id!r}{of}: wrong "
            "client id or secret, or the client is disabled",
            EXIT_AUTH,
            "check the secret (an admin can issue a new one: `exchange clients rotate`), "
            "then `exchange login --profile NAME` again",
            status=401,
            error_code=exc.code,
        )
    if exc.status == 429:
        return Rendered(
            f"too many failed sign-ins for client {exc.client_id!r}; wait and retry",
            EXIT_AUTH,
            status=429,
            error_code=exc.code,
        )
    return Rendered(
        f"sign-in refused for client {exc.client_id!r}{of}: {exc.detail}",
        EXIT_AUTH,
        status=exc.status,
        error_code=exc.code,
    )


_HINTS = {
    401: "the access token was not accepted; sign in again (`exchange whoami` checks)",
    403: "`exchange whoami` shows this client's department and roles",
    429: "over the rate limit; retry later",
    503: "a dependency of the gateway (Kafka, database, KMS, audit log) is down; retry later",
}


def _api(exc: ApiError) -> Rendered:
    details = tuple(f"{path or '(request)'}: {reason}" for path, reason in exc.field_errors)
    code = f", {exc.code}" if exc.code else ""
    return Rendered(
        f"{exc.detail} (HTTP {exc.status}{code})",
        EXIT_FAILED,
        _HINTS.get(exc.status),
        details,
        exc.status,
        exc.code,
    )


def report(r: Rendered, as_json: bool) -> None:
    if as_json:
        body: dict[str, Any] = {"error": r.message, "exit_code": r.code}
        if r.status is not None:
            body["status"] = r.status
        if r.error_code:
            body["code"] = r.error_code
        if r.details:
            body["errors"] = list(r.details)
        if r.hint:
            body["hint"] = r.hint
        sys.stderr.write(json.dumps(body, ensure_ascii=False) + "\n")
        return
    err = stderr_console()
    err.print(f"[bold red]error:[/] {_escape(r.message)}")
    for d in r.details:
        err.print(f"  - {d}", markup=False)
    if r.hint:
        err.print(f"[dim]hint:[/] {_escape(r.hint)}")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@contextmanager
def rendered_errors(cx: Session | None = None, as_json: bool = False) -> Iterator[None]:
    """Expected failures become a clear message and an exit code; bugs still raise."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:
        r = describe(exc, cx)
        if r is None:
            raise
        report(r, as_json or (cx is not None and cx.json))
        raise typer.Exit(r.code) from None


# -- the decorator -----------------------------------------------------------------------
F = TypeVar("F", bound=Callable[..., Any])

ProfileOpt = typer.Option(
    None, "--profile", "-p", envvar="EXCHANGE_PROFILE", help="Profile saved by `exchange login`"
)
UrlOpt = typer.Option(None, "--url", envvar="EXCHANGE_URL", help="Gateway URL")
IdOpt = typer.Option(None, "--client-id", envvar="EXCHANGE_CLIENT_ID", help="OAuth client id")
SecretOpt = typer.Option(
    None, "--client-secret", envvar="EXCHANGE_CLIENT_SECRET", help="OAuth client secret"
)
HomeOpt = typer.Option(
    None, "--home", envvar="EXCHANGE_HOME", help="Data directory holding admin credentials"
)
OutputOpt = typer.Option(
    Output.table, "--output", "-o", envvar="EXCHANGE_OUTPUT", help="table or json"
)

# Parameter names are prefixed so a command's own (e.g. a CLIENT_ID argument) never clash.
_SHARED: tuple[tuple[str, Any, Any], ...] = (
    ("cx_profile", str | None, ProfileOpt),
    ("cx_url", str | None, UrlOpt),
    ("cx_client_id", str | None, IdOpt),
    ("cx_client_secret", str | None, SecretOpt),
    ("cx_home", Path | None, HomeOpt),
    ("cx_output", Output, OutputOpt),
)


def connected(credentials: str = ADMIN_FILE) -> Callable[[F], F]:
    """Give a command the shared options and a ``cx: Session`` parameter; render its
    expected failures. ``credentials``: the home's file used as a last resort
    (``AUDITOR_FILE`` for the audit group)."""

    def decorate(fn: F) -> F:
        hints = get_type_hints(fn)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(fn).parameters.values()
            if p.name != "cx"
        ]
        names = {p.name for p in own}
        clash = names & {name for name, _, _ in _SHARED}
        if clash:
            raise TypeError(f"{fn.__name__} declares shared options itself: {sorted(clash)}")
        extra = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=t)
            for name, t, opt in _SHARED
        ]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            shared = {name.removeprefix("cx_"): kwargs.pop(name) for name, _, _ in _SHARED}
            cx = Session(**shared, credentials=credentials)
            with rendered_errors(cx):
                try:
                    return fn(*args, cx=cx, **kwargs)
                finally:
                    cx.close()

        wrapper.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {
            **{k: v for k, v in hints.items() if k != "cx"},
            **{name: t for name, t, _ in _SHARED},
        }
        return wrapper  # type: ignore[return-value]

    return decorate

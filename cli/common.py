"""Shared CLI helpers: settings with --home, and one-line errors with a non-zero exit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from exchange.errors import ExchangeError
from exchange.settings import Settings

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

HomeOption = typer.Option(
    None, "--home", help="Data directory (default: $EXCHANGE_HOME or ./.exchange)"
)


def settings_for(home: Path | None, **overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if home is not None:
        values["home"] = home
    return Settings(**values)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn our errors into one clear line on stderr and exit code 1."""
    try:
        yield
    except ExchangeError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(1) from None


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with one_line_errors():
            return fn(*args, **kwargs)

    return wrapper

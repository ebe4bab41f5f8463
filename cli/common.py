"""Shared CLI helpers: settings with --home, and one-line errors with a non-zero exit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:  # imported when used: commands that never need settings start faster
    from exchange.settings import Settings

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

HomeOption = typer.Option(
    None, "--home", help="Data directory (default: $EXCHANGE_HOME or ./.exchange)"
)


def settings_for(home: Path | None, **overrides: Any) -> Settings:
    from exchange.settings import Settings

    values = {k: v for k, v in overrides.items() if v is not None}
    if home is not None:
        values["home"] = home
    return Settings(**values)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Expected failures as one clear line on stderr (``cli.connect``), never a traceback."""
    from cli.connect import rendered_errors

    with rendered_errors():
        yield


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with one_line_errors():
            return fn(*args, **kwargs)

    return wrapper

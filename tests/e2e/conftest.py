"""Fixtures shared by the console's browser tests (one Chromium and one department per test
module; see tests/support/console.py for the helpers that drive the pages)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from exchange.client import ExchangeClient
from tests.conftest import make_department
from tests.support.console import launch


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's), shared by the tests of one module."""
    with launch() as b:
        yield b


@pytest.fixture(scope="module")
def dept(request: pytest.FixtureRequest, admin: ExchangeClient) -> str:
    """A fresh department for the module's people, named after the module
    (``test_console_signin`` → ``signin-1a2b3c``)."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").removeprefix("console_")
    d = f"{name.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    make_department(admin, d)
    return d

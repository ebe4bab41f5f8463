"""Fixtures several integration modules share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from exchange.client import ExchangeClient
from tests.support.federation import TwoSites, two_sites
from tests.support.gateway import ThreadGateway


class _Held:
    """The two-site world, open across the modules that use it, closed after the last."""

    def __init__(self) -> None:
        self.stack = ExitStack()
        self.world: TwoSites | None = None

    def close(self) -> None:
        self.world = None
        self.stack.close()


@pytest.fixture(scope="session")
def _two_sites_held(gateway: ThreadGateway) -> Iterator[_Held]:
    held = _Held()
    yield held
    held.close()  # whatever a stopped run (-x, Ctrl-C) left open


def _needed_later(request: pytest.FixtureRequest) -> bool:
    """Does a test of a later module use the world too (then it stays up for it)?"""
    items = request.session.items
    mine = [i for i, item in enumerate(items) if getattr(item, "module", None) is request.module]
    after = items[max(mine) + 1 :] if mine else []
    return any("federated_sites" in getattr(item, "fixturenames", ()) for item in after)


@pytest.fixture(scope="module")
def federated_sites(
    request: pytest.FixtureRequest,
    _two_sites_held: _Held,
    gateway: ThreadGateway,
    admin: ExchangeClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TwoSites]:
    """League (the session gateway) and region, MirrorMaker 2 between them: built once for
    all the modules that use it (tests/support/federation.py), each sharing its own topics."""
    held = _two_sites_held
    if held.world is None:
        workdir = tmp_path_factory.mktemp("two-sites")
        held.world = held.stack.enter_context(two_sites(gateway, admin, workdir))
    yield held.world
    if not _needed_later(request):
        held.close()

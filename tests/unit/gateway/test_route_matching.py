"""Route matching shortcuts: the registry's routes reject every other path before their
percent-encoded match, and the publish route is matched first without shadowing any other."""

from __future__ import annotations

from starlette.routing import Match
from starlette.types import Scope

from gateway.app import ROUTERS
from gateway.routes import registry, topics
from gateway.routes.registry import RegistryRoute


def scope(raw: bytes, method: str = "POST") -> Scope:
    path = raw.decode("latin-1").replace("%2F", "/")
    return {"type": "http", "method": method, "path": path, "raw_path": raw, "root_path": ""}


def versions_route() -> RegistryRoute:
    return next(
        r
        for r in registry.router.routes
        if isinstance(r, RegistryRoute)
        and r.path == "/registry/subjects/{subject}/versions"
        and "POST" in (r.methods or ())
    )


def test_a_registry_route_matches_its_encoded_path_and_nothing_outside_registry() -> None:
    route = versions_route()
    match, child = route.matches(scope(b"/registry/subjects/a%2Fb-value/versions"))
    assert match is Match.FULL and child["path_params"] == {"subject": "a/b-value"}
    assert route.matches(scope(b"/registry/subjects/x/versions", "GET"))[0] is Match.PARTIAL
    for other in (b"/v1/topics/x/records", b"/v1/registry/subjects/x/versions", b"/healthz"):
        assert route.matches(scope(other)) == (Match.NONE, {})


def test_the_publish_routes_come_first_and_share_no_path_with_other_routers() -> None:
    assert ROUTERS[0] is topics.router
    mine = {getattr(r, "path", "") for r in topics.router.routes}
    assert all(p.startswith("/v1/topics") for p in mine)
    others = {getattr(r, "path", "") for router in ROUTERS[1:] for r in router.routes}
    assert not any(p.startswith("/v1/topics") for p in others)

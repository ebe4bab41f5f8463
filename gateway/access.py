"""Who may call each route, declared where the route is defined.

Every route carries an :class:`Access`, attached by ``@access(...)`` placed directly under the
router decorator. The declaration only describes: enforcement stays in the dependencies
(:mod:`gateway.auth`) and the use cases. ``tests/e2e/test_authz_matrix.py`` calls every route
of the app as every caller class and checks the answer against the declaration; a route
without one fails that test, so a new route cannot ship with an unconsidered policy.

Allowed callers, any of:

- ``PUBLIC``: anyone, without a token;
- ``CLIENT``: a client presenting its own credentials (Basic or form), not a bearer token;
- ``ANY``: any caller with a valid token;
- ``"<role>"``: a holder of the role, from any department;
- ``"own:<role>"``: a holder of the role from the department owning the addressed resource;
- ``"own:*"``: any caller from the owning department;
- ``SITE``: another site, by an assertion signed with its site identity key
  (:mod:`exchange.federation.sitecall`); a client of ours, whatever its roles, is refused.

Everybody else is refused: 401 without valid credentials, otherwise 403 — or 404 on routes
with ``own:`` rules, where a refusal must not reveal whether the resource exists.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from fastapi import FastAPI
from starlette.routing import BaseRoute

from exchange.identity.roles import ALL_ROLES

PUBLIC = "public"
CLIENT = "client"
ANY = "any"
SITE = "site"
OWN = "own:"

Relation = Literal["own", "other"]
Outcome = Literal["allow", "unauthenticated", "deny"]
_ATTR = "__exchange_access__"
_F = TypeVar("_F", bound=Callable[..., Any])


def _valid(token: str) -> bool:
    if token in (PUBLIC, CLIENT, ANY, SITE):
        return True
    role = token.removeprefix(OWN)
    return role in ALL_ROLES or (token.startswith(OWN) and role == "*")


@dataclass(frozen=True)
class Access:
    allowed: frozenset[str]

    def __post_init__(self) -> None:
        bad = sorted(t for t in self.allowed if not _valid(t))
        if not self.allowed or bad:
            raise ValueError(f"invalid access declaration: {bad or 'nobody allowed'}")

    @property
    def scoped(self) -> bool:
        """Resource-scoped: a refusal may answer 404 instead of 403."""
        return any(t.startswith(OWN) for t in self.allowed)

    def expect(self, relation: Relation | None, roles: Collection[str]) -> Outcome:
        """The declared answer for a caller: ``relation`` is None for an anonymous caller,
        else whether it belongs to the department owning the addressed resource."""
        if PUBLIC in self.allowed:
            return "allow"
        if relation is None:
            return "unauthenticated"
        if self.allowed & {ANY, CLIENT}:
            return "allow"
        for token in self.allowed:
            role = token.removeprefix(OWN)
            if token.startswith(OWN) and relation != "own":
                continue
            if role == "*" or role in roles:
                return "allow"
        return "deny"


def access(*allowed: str) -> Callable[[_F], _F]:
    """Declare who may call the route whose endpoint this decorates."""
    decl = Access(frozenset(allowed))

    def mark(endpoint: _F) -> _F:
        setattr(endpoint, _ATTR, decl)
        return endpoint

    return mark


def declared(app: FastAPI, route: BaseRoute) -> Access | None:
    """The route's declaration; the framework's own documentation routes are public."""
    docs = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    if getattr(route, "path", None) in docs - {None}:
        return Access(frozenset({PUBLIC}))
    found: Access | None = getattr(getattr(route, "endpoint", None), _ATTR, None)
    return found


def app_routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, also those of included routers (FastAPI keeps those nested, unprefixed by
    the app: routers carry their own prefix)."""
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from app_routes(nested.routes)
        else:
            yield route

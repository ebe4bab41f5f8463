"""Bearer-token authentication and role checks as FastAPI dependencies. Deny by default."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request

from exchange.errors import Forbidden
from exchange.identity.tokens import InvalidToken, Principal
from gateway.container import Services


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise InvalidToken("missing bearer token")
    return value.strip()


def authenticate_token(svc: Services, token: str) -> Principal:
    external = svc.extras.get("external_verifier")
    try:
        return svc.tokens.verify(token)
    except InvalidToken:
        if external is None:
            raise
    principal: Principal = external(token)
    return principal


def principal(request: Request, svc: Services = Depends(services)) -> Principal:
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    p = authenticate_token(svc, bearer_token(request))
    request.state.principal = p
    return p


def require(*roles: str) -> Callable[..., Principal]:
    """Dependency: the caller must hold at least one of ``roles``."""

    def check(p: Principal = Depends(principal)) -> Principal:
        if not any(p.has(r) for r in roles):
            raise Forbidden(f"requires one of the roles: {', '.join(roles)}")
        return p

    return check

"""Bearer-token authentication, rate limits and role checks as FastAPI dependencies.

Deny by default: every route that is not public depends on :func:`principal` (401 without a
valid token) or :func:`require` (403 without one of the named roles).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, HTTPException, Request

from exchange.auditing import AuditRecord
from exchange.errors import ExchangeError, Forbidden
from exchange.identity.external import ExternalVerifier, unverified_parts
from exchange.identity.tokens import InvalidToken, Principal
from gateway.container import Services


async def services(request: Request) -> Services:
    # async: FastAPI runs a plain function dependency in its thread pool, a hop per request
    svc: Services = request.app.state.services
    return svc


def peer_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def limit_peer(request: Request, svc: Services = Depends(services)) -> None:
    """For endpoints used before a client is known (token, revoke, introspect): per address."""
    svc.rate_limiter.enforce(f"peer:{peer_address(request)}")


def limit_principal(svc: Services, p: Principal) -> None:
    """429 when this caller is over its rate. External tokens count per user or service
    account (``sub``), not per shared portal client (``azp``)."""
    key = f"ext:{p.subject or p.client_id}" if p.external else f"client:{p.client_id}"
    svc.rate_limiter.enforce(key)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise InvalidToken("missing bearer token", code="missing_token")
    return value.strip()


def authenticate_token(svc: Services, token: str) -> Principal:
    """Our own tokens, or — when configured — those of the external OIDC issuer.

    The (unverified) ``iss`` only picks the verifier; each verifier then checks everything.
    """
    external: ExternalVerifier | None = svc.external
    if external is not None and external.accepts(token):
        return external.verify(token)
    return svc.tokens.verify(token)


def claimed_identity(token: str) -> str:
    """Who an unverifiable token *claims* to be, for the audit trail only (never trusted)."""
    try:
        claims = unverified_parts(token)[1]
    except InvalidToken:
        return "unknown"
    for name in ("client_id", "azp", "sub"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value[:64]
    return "unknown"


def audit_refused_token(request: Request, svc: Services, token: str, exc: ExchangeError) -> None:
    """Every 401/403 of the bearer check is a security event, recorded before it goes out."""
    request.state.denial_audited = True  # gateway.denials records nothing more for it
    svc.audit.append(
        AuditRecord(
            "auth.denied",
            actor=claimed_identity(token) if token else "unknown",
            outcome="denied",
            data={
                "method": request.method,
                "path": request.url.path,
                "reason": exc.code,
                "address": peer_address(request),
                "verified": False,
            },
        )
    )


def principal(request: Request, svc: Services = Depends(services)) -> Principal:
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    token = ""
    try:
        token = bearer_token(request)
        p = authenticate_token(svc, token)
    except (InvalidToken, Forbidden) as exc:
        audit_refused_token(request, svc, token, exc)
        raise
    limit_principal(svc, p)
    request.state.principal = p
    return p


def require(*roles: str) -> Callable[..., Principal]:
    """Dependency: the caller must hold at least one of ``roles`` (RFC 6750 insufficient_scope)."""
    challenge = f'Bearer error="insufficient_scope", scope="{" ".join(roles)}"'

    def check(
        request: Request, p: Principal = Depends(principal), svc: Services = Depends(services)
    ) -> Principal:
        if not any(p.has(r) for r in roles):
            # An authorization failure is a security event: recorded before the 403 goes out.
            request.state.denial_audited = True
            svc.audit.append(
                AuditRecord(
                    "authz.denied",
                    actor=p.client_id,
                    department=p.department,
                    outcome="denied",
                    data={"method": request.method, "path": request.url.path, "roles": roles},
                )
            )
            raise HTTPException(
                status_code=403,
                detail=f"requires one of the roles: {', '.join(roles)}",
                headers={"WWW-Authenticate": challenge},
            )
        return p

    return check

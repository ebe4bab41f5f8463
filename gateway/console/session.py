"""Who is using the console: the session cookie gives the same :class:`Principal` a bearer
token gives the API, and the same role names decide (no second permission model).

- :func:`console_principal`: the signed-in principal, else a redirect to sign-in;
- :func:`console_require`: ... holding one of the roles, else 403 (audited ``authz.denied``);
- :func:`checked_form`: the POSTed form once its CSRF token checked out, else 403 (audited
  ``console.csrf_refused``).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from exchange.auditing import AuditRecord
from exchange.errors import DependencyUnavailable, ExchangeError
from exchange.identity.sessions import SessionInfo
from exchange.identity.tokens import Principal
from gateway.auth import limit_principal, peer_address, services
from gateway.console import csrf
from gateway.console.web import SESSION_COOKIE, csrf_anchor
from gateway.container import Services
from gateway.denials import audit_denial
from gateway.errors import status_for


class SignInRequired(Exception):
    """No live session: the browser is sent to sign in (then back to ``next``)."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign in required")
        self.next_path = next_path


class ConsoleRefused(Exception):
    """A signed-in person without the right (already audited): answered 403."""

    def __init__(self, reason: str = "forbidden") -> None:
        super().__init__(reason)
        self.reason = reason


def principal_of(info: SessionInfo) -> Principal:
    return Principal(
        client_id=info.principal_id,
        department=info.department,
        roles=info.roles,
        token_id=f"session:{info.id_hash[:16]}",
        issuer=info.issuer,
        expires_at=info.expires_at,
        external=info.external,
        subject=info.login,
    )


async def current_session(request: Request, svc: Services) -> SessionInfo | None:
    if hasattr(request.state, "console_session"):
        found: SessionInfo | None = request.state.console_session
        return found
    raw = request.cookies.get(SESSION_COOKIE, "")
    info = await run_in_threadpool(svc.console_sessions.lookup, raw) if raw else None
    request.state.console_session = info
    return info


def _next_path(request: Request) -> str:
    path = request.url.path
    return path + (f"?{request.url.query}" if request.url.query else "")


async def console_principal(request: Request, svc: Services = Depends(services)) -> Principal:
    info = await current_session(request, svc)
    if info is None:
        raise SignInRequired(quote(_next_path(request) if request.method == "GET" else "/console"))
    p = principal_of(info)
    limit_principal(svc, p)
    request.state.principal = p
    return p


async def refused(request: Request, exc: ExchangeError) -> int:
    """The status for a use case's refusal shown as a page, recorded as the API records it
    (``gateway.denials``: once, unless the use case recorded its own richer event)."""
    status = status_for(exc)
    if not await audit_denial(request, status, exc.code):
        raise DependencyUnavailable("the audit log is unavailable; retry later")
    return status


def route_path(request: Request) -> str:
    return str(getattr(request.scope.get("route"), "path", request.url.path))


def console_require(*roles: str) -> Callable[..., object]:
    """Dependency: the signed-in principal holds one of ``roles`` (as ``gateway.auth.require``)."""

    async def check(
        request: Request,
        p: Principal = Depends(console_principal),
        svc: Services = Depends(services),
    ) -> Principal:
        if not any(p.has(r) for r in roles):
            request.state.denial_audited = True
            await run_in_threadpool(
                svc.audit.append,
                AuditRecord(
                    "authz.denied",
                    actor=p.client_id,
                    department=p.department,
                    outcome="denied",
                    data={"method": request.method, "route": route_path(request), "roles": roles},
                ),
            )
            raise ConsoleRefused("role")
        return p

    return check


async def checked_form(request: Request, svc: Services = Depends(services)) -> FormData:
    """The form of a POST whose CSRF token matches this browser (and from our origin)."""
    await current_session(request, svc)
    form = await request.form()
    submitted = form.get(csrf.FIELD)
    ok = csrf.same_origin(request) and csrf.valid(
        svc.master_key, csrf_anchor(request), submitted if isinstance(submitted, str) else None
    )
    if not ok:
        info: SessionInfo | None = request.state.console_session
        request.state.denial_audited = True
        await run_in_threadpool(
            svc.audit.append,
            AuditRecord(
                "console.csrf_refused",
                actor=info.principal_id if info else "anonymous",
                department=info.department if info else None,
                outcome="denied",
                data={
                    "method": request.method,
                    "route": route_path(request),
                    "address": peer_address(request),
                },
            ),
        )
        raise ConsoleRefused("csrf")
    return form

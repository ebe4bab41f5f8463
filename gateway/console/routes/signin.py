"""The console as a public OAuth client: sign in by the authorization-code grant with PKCE
at the built-in authorization server — or, when one is configured, at the external OIDC
issuer (Keycloak) — then hold the resulting principal in a server-side session.

The pending flow (state, PKCE verifier, where to return) travels in a cookie sealed with the
master key; the access token is verified exactly as the API verifies bearer tokens
(:func:`gateway.auth.authenticate_token`), so the session holds the same :class:`Principal`.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from exchange.auditing import AuditRecord
from exchange.errors import DependencyUnavailable, ExchangeError
from exchange.identity.authcodes import challenge_for, new_verifier
from exchange.identity.tokens import Principal
from exchange.secrets_store import seal, unseal
from gateway.access import ANY, PUBLIC, access
from gateway.auth import authenticate_token, peer_address, services
from gateway.console.session import checked_form, console_principal
from gateway.console.web import (
    SESSION_COOKIE,
    delete_cookie,
    redirect,
    render,
    safe_next,
    session_of,
    set_cookie,
)
from gateway.container import Services
from gateway.routes.authorize import redeem

router = APIRouter(prefix="/console", include_in_schema=False)
FLOW_COOKIE = "exchange_flow"
FLOW_TTL_S = 600
CLIENT_ID = "console"


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


def _external(svc: Services) -> dict[str, Any] | None:
    """The external issuer's endpoints when the console signs in there."""
    settings = svc.settings
    if not (settings.oidc_issuer and settings.oidc_console_client_id and svc.external):
        return None
    try:
        meta = httpx.get(
            f"{settings.oidc_issuer.rstrip('/')}/.well-known/openid-configuration", timeout=5
        ).json()
    except (httpx.HTTPError, ValueError) as exc:
        raise DependencyUnavailable("the external identity provider does not answer") from exc
    return {
        "authorize": str(meta["authorization_endpoint"]),
        "token": str(meta["token_endpoint"]),
        "client_id": settings.oidc_console_client_id,
    }


@router.get("/sign-in")
@access(PUBLIC)
async def sign_in(
    request: Request, next: str = "/console", svc: Services = Depends(services)
) -> Response:
    """Start the authorization-code flow (PKCE S256) and send the browser to sign in."""
    verifier, state = new_verifier(), secrets.token_urlsafe(24)
    external = await run_in_threadpool(_external, svc)
    redirect_uri = f"{_origin(request)}/console/callback"
    flow = {
        "state": state,
        "verifier": verifier,
        "next": safe_next(next),
        "exp": int(time.time()) + FLOW_TTL_S,
        "redirect_uri": redirect_uri,
    }
    query = {
        "response_type": "code",
        "client_id": external["client_id"] if external else CLIENT_ID,
        "redirect_uri": redirect_uri,
        "code_challenge": challenge_for(verifier),
        "code_challenge_method": "S256",
        "state": state,
    }
    if external:
        query["scope"] = "openid"
    endpoint = external["authorize"] if external else "/oauth/authorize"
    response = redirect(request, f"{endpoint}?{urlencode(query)}")
    sealed = seal(svc.master_key, json.dumps(flow).encode(), "console-flow").hex()
    set_cookie(request, response, FLOW_COOKIE, sealed, max_age=FLOW_TTL_S, path="/console")
    return response


def _open_flow(svc: Services, value: str) -> dict[str, Any] | None:
    try:
        flow: dict[str, Any] = json.loads(
            unseal(svc.master_key, bytes.fromhex(value[:4096]), "console-flow")
        )
    except (ValueError, DependencyUnavailable):
        return None
    return flow if flow.get("exp", 0) >= time.time() else None


def _token_from_external(ext: dict[str, Any], code: str, flow: dict[str, Any]) -> str:
    try:
        r = httpx.post(
            ext["token"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": flow["redirect_uri"],
                "client_id": ext["client_id"],
                "code_verifier": flow["verifier"],
            },
            timeout=10,
        )
        body = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise DependencyUnavailable("the external identity provider does not answer") from exc
    token = body.get("access_token") if r.status_code == 200 else None
    if not isinstance(token, str):
        raise DependencyUnavailable("the external identity provider refused the code")
    return token


def _token(svc: Services, code: str, flow: dict[str, Any]) -> str:
    ext = _external(svc)
    if ext is not None:
        return _token_from_external(ext, code, flow)
    return redeem(svc, code, CLIENT_ID, flow["redirect_uri"], flow["verifier"]).access_token


@router.get("/callback")
@access(PUBLIC)
async def callback(
    request: Request,
    code: str = "",
    state: str = "",
    svc: Services = Depends(services),
) -> Response:
    """The authorization server sent the browser back: redeem the code, open a session."""
    flow = _open_flow(svc, request.cookies.get(FLOW_COOKIE, ""))
    if flow is None or not hmac.compare_digest(str(flow["state"]), state[:512]):
        return render(request, "error.html", 400, message="signin.error.expired")
    try:
        token = await run_in_threadpool(_token, svc, code[:256], flow)
        p: Principal = await run_in_threadpool(authenticate_token, svc, token)
    except ExchangeError:
        await run_in_threadpool(
            svc.audit.append,
            AuditRecord(
                "console.signin_failed",
                actor="unknown",
                outcome="denied",
                data={"reason": "code_refused", "address": peer_address(request)},
            ),
        )
        return render(request, "error.html", 400, message="signin.error.expired")
    login = p.subject or p.client_id
    session_id = await run_in_threadpool(
        lambda: svc.console_sessions.create(
            login=login,
            principal_id=p.client_id,
            department=p.department,
            roles=p.roles,
            issuer=p.issuer,
            external=p.external,
        )
    )
    if p.external:  # the built-in server audited its own sign-in already
        await run_in_threadpool(
            svc.audit.append,
            AuditRecord(
                "console.signin",
                actor=p.client_id,
                department=p.department,
                data={"client": "external", "address": peer_address(request)},
            ),
        )
    response = redirect(request, safe_next(str(flow["next"])))
    set_cookie(request, response, SESSION_COOKIE, session_id)
    delete_cookie(request, response, FLOW_COOKIE, path="/console")
    return response


async def _sign_out(request: Request, svc: Services, everywhere: bool) -> Response:
    info = session_of(request)
    raw = request.cookies.get(SESSION_COOKIE, "")
    if info is not None:
        if everywhere:
            ended = await run_in_threadpool(svc.console_sessions.end_all, info.login)
        else:
            await run_in_threadpool(svc.console_sessions.end, raw)
            ended = 1
        await run_in_threadpool(
            svc.audit.append,
            AuditRecord(
                "console.signout_everywhere" if everywhere else "console.signout",
                actor=info.principal_id,
                department=info.department,
                data={"sessions": ended, "address": peer_address(request)},
            ),
        )
    response = render(request, "signed-out.html")
    delete_cookie(request, response, SESSION_COOKIE)
    return response


@router.post("/sign-out")
@access(ANY)
async def sign_out(
    request: Request,
    _: Principal = Depends(console_principal),
    __: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    return await _sign_out(request, svc, everywhere=False)


@router.post("/sign-out-everywhere")
@access(ANY)
async def sign_out_everywhere(
    request: Request,
    _: Principal = Depends(console_principal),
    __: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    return await _sign_out(request, svc, everywhere=True)

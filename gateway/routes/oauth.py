"""The built-in OAuth2 authorization server: client credentials, JWKS, RFC 8414/7009/7662."""

from __future__ import annotations

import base64
import binascii
import math
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from exchange import metrics
from exchange.auditing import AuditRecord
from exchange.errors import NotFound
from exchange.identity.assertions import ASSERTION_TYPE, ClientAssertions
from exchange.identity.external import ALLOWED_ALGORITHMS, unverified_parts
from exchange.identity.roles import ALL_ROLES, may_manage
from exchange.identity.service import Client
from exchange.identity.throttle import Attempt, Lockout
from exchange.identity.tokens import InvalidToken, Principal
from gateway.access import CLIENT, PUBLIC, access
from gateway.auth import limit_peer, peer_address, require, services
from gateway.container import Services
from gateway.routes.authorize import code_grant

router = APIRouter(tags=["oauth"])
# Client authentication runs scrypt: limit callers per address before it does.
_peer_limited = [Depends(limit_peer)]
MAX_ID = 64  # the longest client id the exchange issues


def oauth_error(
    error: str, description: str, status: int = 400, retry_after: float = 0.0
) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if retry_after:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="exchange"'
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    cid, sep, secret = raw.partition(":")
    # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    return (unquote(cid), unquote(secret)) if sep else None


async def client_from_request(
    request: Request,
    svc: Services,
    client_id: str | None,
    client_secret: str | None,
    assertion_type: str | None = None,
    assertion: str | None = None,
) -> Client | None:
    creds = _basic_credentials(request)
    if assertion_type is not None or assertion is not None:
        # RFC 6749 §2.3: exactly one authentication method per request.
        if creds is not None or client_secret or assertion_type != ASSERTION_TYPE:
            return None
        return await run_in_threadpool(_by_assertion, svc, assertion or "", client_id)
    if creds is None and client_id and client_secret:
        creds = (client_id, client_secret)
    if creds is None:
        return None
    return await run_in_threadpool(svc.identity.authenticate, *creds)


def _by_assertion(svc: Services, assertion: str, client_id: str | None) -> Client | None:
    base = svc.tokens.issuer
    try:
        client = ClientAssertions(svc.sessions).authenticate(
            assertion, {f"{base}/oauth/token", base}
        )
    except InvalidToken:
        return None
    return client if client_id in (None, client.client_id) else None


def attempted_client_id(
    request: Request, client_id: str | None, assertion: str | None = None
) -> str:
    """The client id a request *tries* to authenticate as (for audit and throttling): from
    Basic credentials, the form, or the unverified ``sub`` of a client assertion."""
    creds = _basic_credentials(request)
    tried: Any = creds[0] if creds else client_id
    if not tried and assertion:
        try:
            tried = unverified_parts(assertion)[1].get("sub")
        except InvalidToken:
            tried = None
    if not isinstance(tried, str) or not tried:
        return "unknown"
    # Longer ids cannot exist; keep audit rows and throttle keys bounded.
    return tried if len(tried) <= MAX_ID else tried[:MAX_ID] + "..."


async def _audit_denied(
    svc: Services,
    endpoint: str,
    actor: str,
    address: str,
    reason: str,
    lockouts: list[Lockout] | tuple[()] = (),
    client: Client | None = None,
    **data: object,
) -> None:
    metrics.TOKEN_REFUSALS.labels(reason).inc()  # reasons: a fixed set of codes
    dept = client.department if client else None
    common = {"endpoint": endpoint, "address": address}
    records = [
        AuditRecord(
            "token.denied",
            actor=actor,
            department=dept,
            outcome="denied",
            data={**common, "reason": reason, **data},
        )
    ]
    records += [
        AuditRecord(
            "token.lockout",
            actor=actor,
            outcome="denied",
            data={**common, "locked": lk.key, "failures": lk.failures, "seconds": lk.seconds},
        )
        for lk in lockouts
    ]
    await run_in_threadpool(svc.audit.append_many, records)


async def authenticated_client(
    request: Request,
    svc: Services,
    endpoint: str,
    client_id: str | None,
    client_secret: str | None,
    assertion_type: str | None = None,
    assertion: str | None = None,
) -> Client | JSONResponse:
    """The authenticated client, or the refusal to send (401, or 429 while throttled).

    Throttled attempts are refused before any secret is hashed; every refusal is audited
    with the client id that was tried."""
    tried, address = attempted_client_id(request, client_id, assertion), peer_address(request)
    attempt, throttle = Attempt.of(tried, address), svc.failure_throttle
    wait = throttle.admit(attempt)
    if wait > 0:
        await _audit_denied(svc, endpoint, tried, address, "throttled")
        return oauth_error(
            "temporarily_unavailable", "too many failed attempts; retry later", 429, wait
        )
    client: Client | None = None
    try:
        client = await client_from_request(
            request, svc, client_id, client_secret, assertion_type, assertion
        )
    except BaseException:
        throttle.finish(attempt, None)
        raise
    lockouts = throttle.finish(attempt, client is not None)
    if client is None:
        await _audit_denied(svc, endpoint, tried, address, "invalid_client", lockouts)
        return oauth_error("invalid_client", "client authentication failed", 401)
    return client


@router.post(
    "/oauth/token",
    summary="Client-credentials grant (RFC 6749 §4.4); authorization code + PKCE for people",
    dependencies=_peer_limited,
)
@access(CLIENT)
async def token(
    request: Request,
    grant_type: Annotated[str, Form()],
    scope: Annotated[str | None, Form()] = None,
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    client_assertion_type: Annotated[str | None, Form()] = None,
    client_assertion: Annotated[str | None, Form()] = None,
    code: Annotated[str | None, Form()] = None,
    redirect_uri: Annotated[str | None, Form()] = None,
    code_verifier: Annotated[str | None, Form()] = None,
    svc: Services = Depends(services),
) -> JSONResponse:
    if grant_type == "authorization_code" and not client_secret and not client_assertion:
        # A first-party public client: PKCE stands in for the client's authentication.
        return await code_grant(request, svc, code, redirect_uri, client_id, code_verifier)
    client = await authenticated_client(
        request, svc, "token", client_id, client_secret, client_assertion_type, client_assertion
    )
    if isinstance(client, JSONResponse):
        return client
    address = peer_address(request)
    if grant_type != "client_credentials":
        await _audit_denied(
            svc, "token", client.client_id, address, "unsupported_grant_type", client=client
        )
        return oauth_error(
            "unsupported_grant_type", "clients use client_credentials (public clients: code)"
        )
    requested = scope.split() if scope else None
    if requested and not set(requested) <= set(client.roles):
        await _audit_denied(
            svc,
            "token",
            client.client_id,
            address,
            "invalid_scope",
            client=client,
            requested=requested[:20],
        )
        return oauth_error("invalid_scope", "requested scope exceeds the client's roles")
    issued = await run_in_threadpool(svc.tokens.issue, client, requested)
    await run_in_threadpool(
        svc.audit.append,
        AuditRecord(
            "token.issued",
            actor=client.client_id,
            department=client.department,
            data={
                "scope": issued.scope,
                "jti": issued.claims["jti"],
                "auth": "private_key_jwt" if client_assertion else "client_secret",
            },
        ),
    )
    return JSONResponse(
        {
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": issued.scope,
        },
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


@router.get("/oauth/jwks", summary="Public keys that verify our access tokens")
@access(PUBLIC)
async def jwks(svc: Services = Depends(services)) -> dict[str, Any]:
    return await run_in_threadpool(svc.tokens.jwks)


@router.get("/.well-known/oauth-authorization-server", summary="RFC 8414 metadata")
@access(PUBLIC)
async def metadata(svc: Services = Depends(services)) -> dict[str, Any]:
    base = svc.tokens.issuer
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "jwks_uri": f"{base}/oauth/jwks",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "grant_types_supported": ["client_credentials", "authorization_code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none",
        ],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "token_endpoint_auth_signing_alg_values_supported": sorted(ALLOWED_ALGORITHMS),
        "scopes_supported": sorted(ALL_ROLES),
        "response_types_supported": ["code"],
    }


@router.post("/oauth/revoke", summary="RFC 7009 token revocation", dependencies=_peer_limited)
@access(CLIENT)
async def revoke(
    request: Request,
    token: Annotated[str, Form()],
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    svc: Services = Depends(services),
) -> JSONResponse:
    client = await authenticated_client(request, svc, "revoke", client_id, client_secret)
    if isinstance(client, JSONResponse):
        return client
    principal = await run_in_threadpool(svc.tokens.introspect, token)
    # A client may revoke its own tokens; its manager (an admin, or for auditors an auditor)
    # any of the clients it manages.
    if principal.get("active") and await run_in_threadpool(
        _owns_or_manages, svc, client, principal
    ):
        await run_in_threadpool(svc.tokens.revoke, token)
    return JSONResponse({}, status_code=200)


@router.post(
    "/oauth/introspect", summary="RFC 7662 token introspection", dependencies=_peer_limited
)
@access(CLIENT)
async def introspect(
    request: Request,
    token: Annotated[str, Form()],
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    svc: Services = Depends(services),
) -> JSONResponse:
    client = await authenticated_client(request, svc, "introspect", client_id, client_secret)
    if isinstance(client, JSONResponse):
        return client
    body = await run_in_threadpool(svc.tokens.introspect, token)
    # Like revocation: a client learns about its own tokens, a manager about its clients'.
    if body.get("active") and not await run_in_threadpool(_owns_or_manages, svc, client, body):
        body = {"active": False}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _owns_or_manages(svc: Services, client: Client, token: dict[str, Any]) -> bool:
    """Runs in a worker thread (reads the token's client)."""
    if token["client_id"] == client.client_id:
        return True
    try:
        holder = svc.identity.get_client(str(token["client_id"]))
    except NotFound:
        return False
    return may_manage(client.roles, holder.roles)


class RotatedKey(BaseModel):
    kid: str = Field(description="Key id of the new signing key")
    jwks_kids: list[str] = Field(description="Every kid now in the JWKS (old keys overlap)")


@router.post(
    "/v1/admin/signing-keys/rotate",
    response_model=RotatedKey,
    summary="Start signing with a new key; old keys verify until their tokens expire",
)
@access("admin")
async def rotate_signing_key(
    who: Principal = Depends(require("admin")), svc: Services = Depends(services)
) -> RotatedKey:
    kid = await run_in_threadpool(svc.tokens.rotate_signing_key)
    jwks = await run_in_threadpool(svc.tokens.jwks)
    await run_in_threadpool(
        svc.audit.append,
        AuditRecord(
            "admin.signing_key_rotated",
            actor=who.client_id,
            department=who.department,
            data={"kid": kid},
        ),
    )
    return RotatedKey(kid=kid, jwks_kids=[k["kid"] for k in jwks["keys"]])

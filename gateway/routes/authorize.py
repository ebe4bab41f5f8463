"""The authorization-code grant with PKCE (RFC 6749 §4.1, RFC 7636 S256) for people.

``GET /oauth/authorize`` shows the sign-in page to a first-party public client's user
(the console, the Swagger UI at ``/docs``); ``POST`` checks the password — throttled and
locked out like client secrets (:mod:`exchange.identity.throttle`) — then, for ``admin`` and
``auditor``, a TOTP code (enrolling one on first sign-in: the secret is shown once), and
redirects back with a one-time code. ``POST /oauth/token`` with
``grant_type=authorization_code`` redeems it for an access token naming the person. Every
sign-in, failure, lockout and refusal is audited.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from exchange.auditing import AuditRecord
from exchange.errors import DependencyUnavailable
from exchange.identity.authcodes import (
    PUBLIC_CLIENTS,
    InvalidGrant,
    redirect_allowed,
    valid_challenge,
)
from exchange.identity.people import Person
from exchange.identity.throttle import Attempt, Lockout
from exchange.identity.tokens import IssuedToken
from exchange.secrets_store import seal, unseal
from gateway.access import PUBLIC, access
from gateway.auth import limit_peer, peer_address, services
from gateway.console.session import checked_form
from gateway.console.web import delete_cookie, redirect, render, set_cookie
from gateway.container import Services

router = APIRouter(tags=["oauth"])
LOGIN_COOKIE = "exchange_login"  # between the password and the second-factor step
LOGIN_TTL_S = 300
SIGNIN_FAILED = "console.signin_failed"
_peer_limited = [Depends(limit_peer)]


@dataclass(frozen=True)
class AuthRequest:
    """The parameters of an authorization request, once checked."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    state: str


def parse_request(request: Request, values: dict[str, str]) -> AuthRequest | str:
    """The checked request, or the message key of what is wrong with it. Redirect URIs are
    registered paths on this gateway's own origin: the code never leaves the origin that
    showed the sign-in page."""
    client_id = values.get("client_id", "")
    target = urlsplit(values.get("redirect_uri", ""))
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if values.get("response_type") != "code" or client_id not in PUBLIC_CLIENTS:
        return "signin.error.client"
    if f"{target.scheme}://{target.netloc}" != own or target.query or target.fragment:
        return "signin.error.redirect"
    if not redirect_allowed(client_id, target.path):
        return "signin.error.redirect"
    if not valid_challenge(
        values.get("code_challenge", ""), values.get("code_challenge_method", "")
    ):
        return "signin.error.pkce"
    state = values.get("state", "")
    if len(state) > 512:
        return "signin.error.state"
    return AuthRequest(client_id, target.geturl(), values["code_challenge"], state)


def _hidden(req: AuthRequest) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": req.client_id,
        "redirect_uri": req.redirect_uri,
        "code_challenge": req.code_challenge,
        "code_challenge_method": "S256",
        "state": req.state,
    }


def _form_values(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


@router.get("/oauth/authorize", summary="Sign-in page of the authorization-code grant (PKCE)")
@access(PUBLIC)
async def authorize_page(request: Request) -> Response:
    parsed = parse_request(request, dict(request.query_params))
    if isinstance(parsed, str):
        return render(request, "error.html", 400, message=parsed)
    return render(request, "signin.html", hidden=_hidden(parsed), login="", error=None)


async def _audit(svc: Services, records: list[AuditRecord]) -> None:
    await run_in_threadpool(svc.audit.append_many, records)


def failure_records(
    kind: str,
    login: str,
    address: str,
    reason: str,
    lockouts: list[Lockout],
    department: str | None = None,
) -> list[AuditRecord]:
    actor = f"person:{login[:64]}" if login else "unknown"
    records = [
        AuditRecord(
            kind,
            actor=actor,
            department=department,
            outcome="denied",
            data={"reason": reason, "address": address},
        )
    ]
    records += [
        AuditRecord(
            "console.lockout",
            actor=actor,
            department=department,
            outcome="denied",
            data={
                "locked": lk.key,
                "failures": lk.failures,
                "seconds": lk.seconds,
                "address": address,
            },
        )
        for lk in lockouts
    ]
    return records


@dataclass(frozen=True)
class Answer:
    """The outcome of one answer to a person's secret under the failure throttle."""

    ok: bool
    reason: str = ""  # why not: "throttled", or what ``check`` said
    seconds: int = 0  # when throttled: how long to wait


async def guarded(
    svc: Services,
    kind: str,
    login: str,
    address: str,
    check: Callable[[], str | None],
    department: str | None = None,
) -> Answer:
    """One answer to a person's secret (password, TOTP code), throttled and locked out like
    client secrets, the same keys for sign-in and the password change: refused at once while
    locked out (no hashing), else ``check`` runs in a worker thread — None when right, else
    the reason it is wrong — and its outcome counts (an exception counts as none: the store
    failed). Each refusal, and the lockouts it starts, is audited as ``kind``."""
    attempt = Attempt.of(f"person:{login}", address)
    wait = svc.failure_throttle.admit(attempt)
    if wait > 0:
        await _audit(svc, failure_records(kind, login, address, "throttled", [], department))
        return Answer(False, "throttled", max(1, math.ceil(wait)))
    try:
        reason = await run_in_threadpool(check)
    except BaseException:
        svc.failure_throttle.finish(attempt, None)
        raise
    lockouts = svc.failure_throttle.finish(attempt, reason is None)
    if reason is not None:
        await _audit(svc, failure_records(kind, login, address, reason, lockouts, department))
        return Answer(False, reason)
    return Answer(True)


@router.post("/oauth/authorize", summary="Check a person's password", dependencies=_peer_limited)
@access(PUBLIC)
async def authorize_password(
    request: Request,
    form: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    values = _form_values(form)
    parsed = parse_request(request, values)
    if isinstance(parsed, str):
        return render(request, "error.html", 400, message=parsed)
    login, password = values.get("login", "").strip().lower()[:64], values.get("password", "")
    found: list[Person] = []

    def check() -> str | None:
        person = svc.people.authenticate(login, password)
        found.extend([person] if person else [])
        return None if person else "bad_password"

    answer = await guarded(svc, SIGNIN_FAILED, login, peer_address(request), check)
    if answer.reason == "throttled":
        return _again(request, parsed, login, "signin.error.locked", 429, answer.seconds)
    if not answer.ok:
        return _again(request, parsed, login, "signin.error.credentials", 401)
    (person,) = found
    if person.needs_second_factor:
        return await _second_factor_step(request, svc, person, parsed)
    return await _grant(request, svc, person, parsed, "password")


def _again(
    request: Request, req: AuthRequest, login: str, error: str, status: int, seconds: int = 0
) -> Response:
    response = render(
        request,
        "signin.html",
        status,
        hidden=_hidden(req),
        login=login,
        error=error,
        seconds=seconds,
    )
    if seconds:
        response.headers["Retry-After"] = str(seconds)
    return response


def _seal_login(svc: Services, login: str, req: AuthRequest) -> str:
    body = {"login": login, "exp": int(time.time()) + LOGIN_TTL_S, **asdict(req)}
    return seal(svc.master_key, json.dumps(body).encode(), "console-login").hex()


def _open_login(svc: Services, value: str) -> tuple[str, AuthRequest] | None:
    try:
        body = json.loads(unseal(svc.master_key, bytes.fromhex(value), "console-login"))
    except (ValueError, DependencyUnavailable):
        return None
    if body.get("exp", 0) < time.time():
        return None
    fields = {k: body[k] for k in ("client_id", "redirect_uri", "code_challenge", "state")}
    return str(body["login"]), AuthRequest(**fields)


async def _second_factor_step(
    request: Request, svc: Services, person: Person, req: AuthRequest
) -> Response:
    enrolment = None
    if not person.totp_enrolled:
        enrolment = await run_in_threadpool(svc.people.begin_enrolment, person.login)
    response = render(request, "totp.html", enrolment=enrolment, error=None)
    set_cookie(
        request,
        response,
        LOGIN_COOKIE,
        _seal_login(svc, person.login, req),
        max_age=LOGIN_TTL_S,
        path="/oauth/authorize",
        samesite="strict",
    )
    return response


@router.post(
    "/oauth/authorize/second-factor",
    summary="Check a person's TOTP code",
    dependencies=_peer_limited,
)
@access(PUBLIC)
async def authorize_second_factor(
    request: Request,
    form: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    opened = _open_login(svc, request.cookies.get(LOGIN_COOKIE, "")[:4096])
    if opened is None:
        return render(request, "error.html", 400, message="signin.error.expired")
    login, req = opened
    code = str(form.get("code") or "")[:16]

    def check() -> str | None:
        return None if svc.people.check_totp(login, code) else "bad_totp"

    answer = await guarded(svc, SIGNIN_FAILED, login, peer_address(request), check)
    if answer.reason == "throttled":
        locked = render(
            request,
            "totp.html",
            429,
            enrolment=None,
            error="signin.error.locked",
            seconds=answer.seconds,
        )
        locked.headers["Retry-After"] = str(answer.seconds)
        return locked
    if not answer.ok:
        return render(request, "totp.html", 401, enrolment=None, error="signin.error.totp")
    person = await run_in_threadpool(svc.people.get, login)
    response = await _grant(request, svc, person, req, "password+totp")
    delete_cookie(request, response, LOGIN_COOKIE, path="/oauth/authorize", samesite="strict")
    return response


async def _grant(
    request: Request, svc: Services, person: Person, req: AuthRequest, method: str
) -> Response:
    code = await run_in_threadpool(
        lambda: svc.auth_codes.issue(
            client_id=req.client_id,
            redirect_uri=req.redirect_uri,
            challenge=req.code_challenge,
            login=person.login,
            scope=" ".join(sorted(person.roles)),
        )
    )
    await _audit(
        svc,
        [
            AuditRecord(
                "console.signin",
                actor=person.principal_id,
                department=person.department,
                data={"client": req.client_id, "method": method, "address": peer_address(request)},
            )
        ],
    )
    query = urlencode({"code": code, "state": req.state})
    return redirect(request, f"{req.redirect_uri}?{query}")


def redeem(
    svc: Services, code: str, client_id: str, redirect_uri: str, verifier: str
) -> IssuedToken:
    """Runs in a worker thread: the code's person (still enabled) gets a token."""
    redeemed = svc.auth_codes.redeem(
        code, client_id=client_id, redirect_uri=redirect_uri, verifier=verifier
    )
    person = svc.people.get(redeemed.login)
    if person.disabled:
        raise InvalidGrant("the person is disabled")
    return svc.tokens.issue_person(person.login, person.department, list(person.roles), client_id)


async def code_grant(
    request: Request,
    svc: Services,
    code: str | None,
    redirect_uri: str | None,
    client_id: str | None,
    verifier: str | None,
) -> JSONResponse:
    from gateway.routes.oauth import oauth_error

    if not (code and redirect_uri and client_id and verifier) or client_id not in PUBLIC_CLIENTS:
        return oauth_error(
            "invalid_request", "code, redirect_uri, client_id and code_verifier are required"
        )
    try:
        issued = await run_in_threadpool(redeem, svc, code, client_id, redirect_uri, verifier)
    except InvalidGrant as exc:
        await _audit(
            svc,
            [
                AuditRecord(
                    "token.denied",
                    actor=client_id,
                    outcome="denied",
                    data={
                        "endpoint": "token",
                        "reason": "invalid_grant",
                        "address": peer_address(request),
                    },
                )
            ],
        )
        return oauth_error("invalid_grant", exc.message)
    await _audit(
        svc,
        [
            AuditRecord(
                "token.issued",
                actor=f"person:{issued.claims['sub']}",
                department=str(issued.claims["dept"]),
                data={
                    "scope": issued.scope,
                    "jti": issued.claims["jti"],
                    "auth": "authorization_code",
                },
            )
        ],
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


__all__ = [
    "Answer",
    "AuthRequest",
    "code_grant",
    "failure_records",
    "guarded",
    "parse_request",
    "redeem",
    "router",
]

"""A signed-in person's own account: change the password.

The current password — and, for the roles that sign in with a second factor (``admin``,
``auditor``), a fresh TOTP code — is checked under the same failure throttle as sign-in
(the same keys: wrong answers here count towards the sign-in lockout), the new one follows
the creation policy and KDF (:mod:`exchange.identity.passwords`), and every browser of the
person is signed out: this one gets a fresh session, the others must sign in again. Each
change and each refusal is audited. People who sign in at an external issuer (Keycloak) —
and sessions of machine principals — change their password there: the page says so.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from exchange.auditing import AuditRecord
from exchange.identity.passwords import MAX_LENGTH, MIN_DISTINCT, MIN_LENGTH
from exchange.identity.people import (
    PERSON_PREFIX,
    CredentialsRefused,
    Person,
    WeakPassword,
    check_new_password,
)
from exchange.identity.tokens import Principal
from gateway.access import ANY, access
from gateway.auth import peer_address, services
from gateway.console.session import checked_form, console_principal
from gateway.console.web import (
    SESSION_COOKIE,
    flash,
    redirect,
    render,
    session_of,
    set_cookie,
    take_flash,
)
from gateway.container import Services
from gateway.routes.authorize import failure_records, guarded

router = APIRouter(prefix="/console/account", include_in_schema=False)
FAILED = "person.password_change_failed"


def own_login(me: Principal) -> str | None:
    """The built-in person behind this session, else None (external or machine principal)."""
    if me.external or not me.subject or me.client_id != PERSON_PREFIX + me.subject:
        return None
    return me.subject


async def _page(
    request: Request,
    svc: Services,
    me: Principal,
    status: int = 200,
    error: str | None = None,
    weak: list[str] | None = None,
    seconds: int = 0,
) -> Response:
    login = own_login(me)
    person: Person | None = None
    if login is not None:
        person = await run_in_threadpool(svc.people.get, login)
    response = render(
        request,
        "account.html",
        status,
        person=person,
        error=error,
        weak=weak or [],
        seconds=seconds,
        changed=take_flash(request).get("changed") == "1",
        policy={"min": MIN_LENGTH, "distinct": MIN_DISTINCT, "max": MAX_LENGTH},
    )
    if seconds:
        response.headers["Retry-After"] = str(seconds)
    return response


@router.get("")
@access(ANY)
async def account(
    request: Request,
    me: Principal = Depends(console_principal),
    svc: Services = Depends(services),
) -> Response:
    return await _page(request, svc, me)


async def _audit(svc: Services, records: list[AuditRecord]) -> None:
    await run_in_threadpool(svc.audit.append_many, records)


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value[: MAX_LENGTH + 1] if isinstance(value, str) else ""


@router.post("/password")
@access(ANY)
async def change_password(
    request: Request,
    me: Principal = Depends(console_principal),
    form: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    login = own_login(me)
    if login is None:
        return await _page(request, svc, me, 409, error="account.error.elsewhere")
    current, new = _field(form, "current"), _field(form, "new")
    address = peer_address(request)
    try:  # the policy first: it needs no secret, so it costs no hashing and no try
        if new != _field(form, "again"):
            raise WeakPassword(["mismatch"])
        check_new_password(login, current, new)
    except WeakPassword as exc:
        records = failure_records(FAILED, login, address, "weak_password", [], me.department)
        await _audit(svc, records)
        return await _page(request, svc, me, 422, "account.error.weak", exc.weaknesses)
    code = _field(form, "code")[:16].strip() or None

    def check() -> str | None:
        try:
            svc.people.change_password(login, current, new, code)
        except CredentialsRefused as exc:
            return exc.reason
        return None

    # Under the sign-in's throttle and keys, audited like a failed sign-in (and its lockouts).
    answer = await guarded(svc, FAILED, login, address, check, me.department)
    if answer.reason == "throttled":
        return await _page(request, svc, me, 429, "account.error.locked", seconds=answer.seconds)
    if not answer.ok:
        return await _page(request, svc, me, 403, f"account.error.{answer.reason}")
    return await _changed(request, svc, me, login, address)


async def _changed(
    request: Request, svc: Services, me: Principal, login: str, address: str
) -> Response:
    """Every session of the person ends; this browser continues in a fresh one."""
    info = session_of(request)
    assert info is not None  # console_principal found it
    ended = await run_in_threadpool(svc.console_sessions.end_all, login)
    fresh = await run_in_threadpool(
        lambda: svc.console_sessions.create(
            login=info.login,
            principal_id=info.principal_id,
            department=info.department,
            roles=info.roles,
            issuer=info.issuer,
        )
    )
    await _audit(
        svc,
        [
            AuditRecord(
                "person.password_changed",
                actor=me.client_id,
                department=me.department,
                data={"other_sessions_ended": max(0, ended - 1), "address": address},
            )
        ],
    )
    response = redirect(request, "/console/account")
    set_cookie(request, response, SESSION_COOKIE, fresh)
    flash(request, response, {"changed": "1"})
    return response

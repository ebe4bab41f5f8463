"""People accounts: create (the first password shown once), reset the second factor,
disable and enable. Admins manage people, auditors manage auditor people — the same
separation of duties as for clients (:func:`exchange.identity.roles.may_manage`). A disabled
person, or one whose second factor was reset, is signed out everywhere at once."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from exchange.errors import ExchangeError, Forbidden
from exchange.identity.roles import ALL_ROLES
from exchange.identity.tokens import Principal
from gateway.access import access
from gateway.audited import audit_action
from gateway.auth import services
from gateway.console.routes.admin import text
from gateway.console.session import checked_form, console_require, refused, route_path
from gateway.console.web import flash, redirect, render, take_flash
from gateway.container import Services
from gateway.routes.people import PERSON_CHANGES, apply_change, make_person

router = APIRouter(prefix="/console/admin/people", include_in_schema=False)
managers = console_require("admin", "auditor")


async def _page(
    request: Request,
    svc: Services,
    dept: str | None,
    status: int = 200,
    error: str | None = None,
) -> Response:
    people = await run_in_threadpool(svc.people.list, dept or None)
    departments = await run_in_threadpool(svc.identity.list_departments)
    return render(
        request,
        "admin/people.html",
        status,
        people=people,
        departments=departments,
        roles=sorted(ALL_ROLES),
        dept=dept or "",
        shown=take_flash(request),
        error=error,
    )


@router.get("")
@access("admin", "auditor")
async def people(
    request: Request,
    dept: str = "",
    _: Principal = Depends(managers),
    svc: Services = Depends(services),
) -> Response:
    return await _page(request, svc, dept[:64] or None)


async def _refused(
    request: Request, svc: Services, me: Principal, exc: ExchangeError, action: str, login: str
) -> Response:
    if isinstance(exc, Forbidden):
        request.state.denial_audited = True
        await audit_action(
            svc,
            me,
            "authz.denied",
            "denied",
            method=request.method,
            route=route_path(request),
            action=action,
            person=login,
            reason=exc.code,
        )
    return await _page(request, svc, None, await refused(request, exc), exc.message)


# Declared for admins: auditors pass the role check but manage only auditor people (as the
# API's client management, gateway/routes/identity.py).
@router.post("")
@access("admin")
async def create_person(
    request: Request,
    me: Principal = Depends(managers),
    form: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    login, dept = text(form, "login", 64).lower(), text(form, "department", 64)
    roles = [r for r in form.getlist("roles") if isinstance(r, str)][:20]
    try:  # the API's own creation (gateway/routes/people.py): one implementation
        _, password = await make_person(svc, me, dept, login, text(form, "name"), roles)
    except ExchangeError as exc:
        return await _refused(request, svc, me, exc, "person_created", login)
    response = redirect(request, "/console/admin/people")
    flash(request, response, {"login": login, "password": password})
    return response


@router.post("/{login}/{action}")
@access("admin")
async def change_person(
    login: str,
    action: str,
    request: Request,
    me: Principal = Depends(managers),
    _: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    if action not in PERSON_CHANGES:
        return render(request, "error.html", 404, message="error.not_found")
    try:  # the API's own change (gateway/routes/people.py): sessions ended, audited
        await apply_change(svc, me, login, action)
    except ExchangeError as exc:
        return await _refused(request, svc, me, exc, f"person_{action}", login)
    return redirect(request, "/console/admin/people")

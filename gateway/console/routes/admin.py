"""Administrator pages: the department tree, a department's clients, topics, key rotation
status and system health.

Every change calls the API's own route function with the signed-in principal, so the
checks, the separation of duties and the audit events are the API's, not a copy of them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from exchange.errors import ExchangeError
from exchange.identity.roles import ALL_ROLES
from exchange.identity.service import LEVELS, Department
from exchange.identity.tokens import Principal
from gateway.access import access
from gateway.auth import services
from gateway.console.session import checked_form, console_require, refused
from gateway.console.web import flash, redirect, render, take_flash
from gateway.container import Services
from gateway.routes import identity, keys, oauth, topics

router = APIRouter(prefix="/console/admin", include_in_schema=False)
T = TypeVar("T")
admin_only = console_require("admin")
CLIENT_ROLES = sorted(ALL_ROLES - {"auditor"})  # auditors' clients are the auditors' to make


class Refused(Exception):
    """A use case said no: the page is shown again with the reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


async def attempt(request: Request, call: Awaitable[T]) -> T:
    try:
        return await call
    except ExchangeError as exc:
        raise Refused(await refused(request, exc), exc.message) from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise Refused(422, problems) from exc


def text(form: FormData, name: str, limit: int = 200) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


# -- departments and clients ---------------------------------------------------------------
def tree(departments: list[Department]) -> list[dict[str, Any]]:
    """Region → city → county → township, as nested nodes (orphans at the top)."""
    known = {d.id for d in departments}
    children: dict[str | None, list[Department]] = {}
    for d in departments:
        children.setdefault(d.parent if d.parent in known else None, []).append(d)

    def node(d: Department) -> dict[str, Any]:
        return {"dept": d, "children": [node(c) for c in children.get(d.id, [])]}

    return [node(d) for d in children.get(None, [])]


async def _departments_page(
    request: Request, svc: Services, status: int = 200, error: str | None = None
) -> Response:
    found = await run_in_threadpool(svc.identity.list_departments)
    return render(
        request,
        "admin/departments.html",
        status,
        tree=tree(found),
        departments=found,
        levels=LEVELS,
        error=error,
    )


@router.get("/departments")
@access("admin")
async def departments(
    request: Request, _: Principal = Depends(admin_only), svc: Services = Depends(services)
) -> Response:
    return await _departments_page(request, svc)


@router.post("/departments")
@access("admin")
async def create_department(
    request: Request,
    me: Principal = Depends(admin_only),
    form: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    try:
        body = await attempt(request, _department_in(form))
        await attempt(request, identity.create_department(body, me, svc))
    except Refused as exc:
        return await _departments_page(request, svc, exc.status, exc.message)
    return redirect(request, f"/console/admin/departments/{body.id}")


async def _department_in(form: FormData) -> identity.DepartmentIn:
    parent = text(form, "parent", 64) or None
    return identity.DepartmentIn(
        id=text(form, "id", 64),
        name=text(form, "name"),
        level=text(form, "level", 16),
        parent=parent,
    )


async def _department_page(
    request: Request, svc: Services, dept: str, status: int = 200, error: str | None = None
) -> Response:
    def load() -> tuple[Department, list[Any], list[Any]]:
        return (
            svc.identity.get_department(dept),
            svc.identity.list_clients(dept),
            svc.people.list(dept),
        )

    try:
        department, clients, people = await attempt(request, run_in_threadpool(load))
    except Refused as exc:
        return render(request, "error.html", exc.status, message="error.not_found")
    return render(
        request,
        "admin/department.html",
        status,
        department=department,
        clients=clients,
        people=people,
        roles=CLIENT_ROLES,
        shown=take_flash(request),
        error=error,
    )


@router.get("/departments/{dept}")
@access("admin")
async def department(
    dept: str,
    request: Request,
    _: Principal = Depends(admin_only),
    svc: Services = Depends(services),
) -> Response:
    return await _department_page(request, svc, dept)


def _secret_once(request: Request, dept: str, client_id: str, secret: str) -> Response:
    response = redirect(request, f"/console/admin/departments/{dept}")
    flash(request, response, {"client_id": client_id, "client_secret": secret})
    return response


@router.post("/departments/{dept}/clients")
@access("admin")
async def create_client(
    dept: str,
    request: Request,
    me: Principal = Depends(admin_only),
    form: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    roles = [r for r in form.getlist("roles") if isinstance(r, str)][:20]
    try:
        body = await attempt(request, _client_in(text(form, "name"), roles))
        out = await attempt(request, identity.create_client(dept, body, request, me, svc))
    except Refused as exc:
        return await _department_page(request, svc, dept, exc.status, exc.message)
    return _secret_once(request, dept, out.client_id, out.client_secret)


async def _client_in(name: str, roles: list[str]) -> identity.ClientIn:
    return identity.ClientIn(name=name, roles=roles)


@router.post("/departments/{dept}/clients/{client_id}/rotate")
@access("admin")
async def rotate_client(
    dept: str,
    client_id: str,
    request: Request,
    me: Principal = Depends(admin_only),
    _: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    try:
        out = await attempt(request, identity.rotate_client(dept, client_id, request, me, svc))
    except Refused as exc:
        return await _department_page(request, svc, dept, exc.status, exc.message)
    return _secret_once(request, dept, out.client_id, out.client_secret)


@router.post("/departments/{dept}/clients/{client_id}/{action}")
@access("admin")
async def enable_or_disable_client(
    dept: str,
    client_id: str,
    action: str,
    request: Request,
    me: Principal = Depends(admin_only),
    _: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    if action not in ("disable", "enable"):
        return render(request, "error.html", 404, message="error.not_found")
    change = identity.disable_client if action == "disable" else identity.enable_client
    try:
        await attempt(request, change(dept, client_id, request, me, svc))
    except Refused as exc:
        return await _department_page(request, svc, dept, exc.status, exc.message)
    return redirect(request, f"/console/admin/departments/{dept}")


# -- topics --------------------------------------------------------------------------------
async def _topics_page(
    request: Request, svc: Services, status: int = 200, error: str | None = None
) -> Response:
    entries = await run_in_threadpool(svc.catalog.search)
    found = await run_in_threadpool(svc.identity.list_departments)
    return render(
        request, "admin/topics.html", status, entries=entries, departments=found, error=error
    )


@router.get("/topics")
@access("admin")
async def topic_list(
    request: Request, _: Principal = Depends(admin_only), svc: Services = Depends(services)
) -> Response:
    return await _topics_page(request, svc)


@router.post("/topics")
@access("admin")
async def create_topic(
    request: Request,
    me: Principal = Depends(admin_only),
    form: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    fields = ("name", "owner", "value_subject", "share_type", "title", "legal_basis")
    values: dict[str, Any] = {k: text(form, k, 255) for k in fields if text(form, k, 255)}
    values["partitions"] = text(form, "partitions", 4) or "1"
    try:
        body = await attempt(request, _topic_in(values))
        await attempt(request, topics.create_topic(body, me, svc))
    except Refused as exc:
        return await _topics_page(request, svc, exc.status, exc.message)
    return redirect(request, "/console/admin/topics")


async def _topic_in(values: dict[str, Any]) -> topics.TopicIn:
    return topics.TopicIn(**values)


# -- keys ------------------------------------------------------------------------------------
@router.get("/keys")
@access("admin")
async def key_status(
    request: Request, me: Principal = Depends(admin_only), svc: Services = Depends(services)
) -> Response:
    field_keys = await keys.list_keys(None, me, svc)
    signing = await run_in_threadpool(svc.tokens.jwks)
    return render(
        request,
        "admin/keys.html",
        field_keys=field_keys,
        signing=[k["kid"] for k in signing["keys"]],
        shown=take_flash(request),
    )


@router.post("/keys/signing/rotate")
@access("admin")
async def rotate_signing_key(
    request: Request,
    me: Principal = Depends(admin_only),
    _: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    rotated = await oauth.rotate_signing_key(me, svc)
    response = redirect(request, "/console/admin/keys")
    flash(request, response, {"kid": rotated.kid})
    return response


# -- health ------------------------------------------------------------------------------------
HEALTH_ROWS = 200


def subscription_health(
    svc: Services, limit: int = HEALTH_ROWS, topic: str | None = None
) -> list[dict[str, Any]]:
    """Each active subscription's lag (records not yet committed) and dead letters."""
    rows = svc.subscriptions.overview(limit, topic)
    ends: dict[str, dict[int, int]] = {}
    out = []
    for row in rows:
        if row["topic"] not in ends:
            try:
                reader = svc.kafka.reader(row["topic"])
                try:
                    ends[row["topic"]] = reader.end_offsets()
                finally:
                    reader.close()
            except ExchangeError:
                ends[row["topic"]] = {}
        end = ends[row["topic"]]
        cursor = {int(p): o for p, o in row["cursor"].items()}
        lag = sum(max(0, e - cursor.get(p, 0)) for p, e in end.items()) if end else None
        out.append({**row, "lag": lag})
    return out


@router.get("/health")
@access("admin")
async def health(
    request: Request,
    topic: str = "",
    _: Principal = Depends(admin_only),
    svc: Services = Depends(services),
) -> Response:
    deps = svc.health.status() if svc.health is not None else {}
    kms = svc.crypto.metrics.snapshot()
    topic = topic.strip()[:255]
    subs = await run_in_threadpool(subscription_health, svc, HEALTH_ROWS, topic or None)
    topics = await run_in_threadpool(svc.catalog.search)
    return render(
        request,
        "admin/health.html",
        deps=deps,
        kms=kms,
        subscriptions=subs,
        topic=topic,
        topics=sorted(e.topic for e in topics),
        capped=HEALTH_ROWS if len(subs) >= HEALTH_ROWS else 0,
    )

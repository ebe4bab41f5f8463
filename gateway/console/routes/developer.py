"""Developer pages: the catalog (topics, owners, share types, schemas with classification
badges, AsyncAPI), a subject's version history with a diff, a compatibility check of a
pasted candidate with its classification and sealing rules, registration, and publishing a
sample record and watching it arrive on a test subscription of the person's department.
Reads and writes go through the registry and catalog services with the same
checks as the API (the registry's own ``writer`` check for registering)."""

from __future__ import annotations

import difflib
import json
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import JSONResponse, Response

from consent.domain import CatalogEntry
from dataplane.publish import Batch, NewRecord
from exchange.errors import ExchangeError
from exchange.identity.tokens import Principal
from gateway.access import ANY, access
from gateway.auth import services
from gateway.console.routes.admin import text
from gateway.console.session import (
    checked_form,
    console_principal,
    console_require,
    refused,
)
from gateway.console.web import flash, redirect, render, take_flash
from gateway.container import Services
from gateway.routes import catalog as catalog_routes
from gateway.routes import registry as registry_routes
from gateway.routes import subscriptions as subscription_routes
from schemas.classification import downgrades, field_infos
from schemas.sealing_rules import SEALED_CLASSES

router = APIRouter(prefix="/console/dev", include_in_schema=False)
READ_ROLES = ("registry:read", "registry:write", "admin")  # as the registry's read routes
readers = console_require(*READ_ROLES)
publishers = console_require("publisher")
subscribers = console_require("subscriber")
MAX_SCHEMA = 64 * 1024


def _entry_view(svc: Services, e: CatalogEntry) -> dict[str, Any]:
    out = catalog_routes._out(svc, e)
    return out.model_dump()


@router.get("/catalog")
@access(ANY)
async def catalog(
    request: Request,
    q: str = "",
    dept: str = "",
    share_type: str = "",
    _: Principal = Depends(console_principal),
    svc: Services = Depends(services),
) -> Response:
    share = share_type if share_type in ("unconditional", "conditional", "not_shared") else None

    def run() -> list[dict[str, Any]]:
        found = svc.catalog.search(q[:200] or None, dept[:64] or None, share)
        return [_entry_view(svc, e) for e in found[:200]]

    entries = await run_in_threadpool(run)
    departments = await run_in_threadpool(svc.identity.list_departments)
    return render(
        request,
        "dev/catalog.html",
        entries=entries,
        departments=departments,
        q=q[:200],
        dept=dept,
        share_type=share or "",
    )


@router.get("/catalog/{topic}")
@access(ANY)
async def entry(
    topic: str,
    request: Request,
    _: Principal = Depends(console_principal),
    svc: Services = Depends(services),
) -> Response:
    try:
        view = await run_in_threadpool(lambda: _entry_view(svc, svc.catalog.get(topic)))
    except ExchangeError as exc:
        return render(request, "error.html", await refused(request, exc), message="error.not_found")
    return render(request, "dev/entry.html", e=view, sealed=sorted(SEALED_CLASSES))


@router.get("/asyncapi")
@access(ANY)
async def asyncapi(
    me: Principal = Depends(console_principal), svc: Services = Depends(services)
) -> JSONResponse:
    """The catalog as AsyncAPI 3.0 (the API's document, for a browser session)."""
    doc = await catalog_routes.catalog_asyncapi(me, svc)
    return JSONResponse(doc, headers={"Content-Disposition": 'inline; filename="asyncapi.json"'})


def _pretty(schema: str) -> str:
    try:
        return json.dumps(json.loads(schema), indent=2, ensure_ascii=False)
    except ValueError:
        return schema


@router.get("/schemas/{subject}")
@access("registry:read", "registry:write", "admin")
async def history(
    subject: str,
    request: Request,
    a: int = 0,
    b: int = 0,
    _: Principal = Depends(readers),
    svc: Services = Depends(services),
) -> Response:
    reg = svc.registry

    def load() -> dict[str, Any]:
        versions = reg.versions(subject)
        new = b if b in versions else versions[-1]
        old = a if a in versions else (versions[-2] if len(versions) > 1 else new)
        texts = {v: _pretty(reg.version(subject, v).schema) for v in {old, new}}
        diff = list(
            difflib.unified_diff(
                texts[old].splitlines(), texts[new].splitlines(), f"v{old}", f"v{new}", lineterm=""
            )
        )
        fields = reg.fields(subject, new)
        return {"versions": versions, "old": old, "new": new, "diff": diff, "fields": fields}

    try:
        data = await run_in_threadpool(load)
    except ExchangeError as exc:
        return render(request, "error.html", await refused(request, exc), message="error.not_found")
    shown = take_flash(request)
    return render(request, "dev/history.html", subject=subject, shown=shown, **data)


def _classified(candidate: str) -> tuple[list[dict[str, Any]], str | None]:
    try:
        infos = field_infos(candidate)
    except (ValueError, TypeError, KeyError) as exc:
        return [], str(exc)[:300]
    rows = [
        {
            "path": f.path,
            "classification": f.classification.value,
            "sealed": f.classification in SEALED_CLASSES,
            "data_subject": f.data_subject,
        }
        for f in infos
    ]
    return rows, None


async def _compat_page(
    request: Request,
    svc: Services,
    subject: str = "",
    candidate: str = "",
    result: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    subjects = await run_in_threadpool(svc.registry.subjects)
    return render(
        request,
        "dev/compatibility.html",
        status,
        subjects=subjects,
        subject=subject,
        candidate=candidate,
        result=result,
        shown=take_flash(request),
    )


@router.get("/compatibility")
@access("registry:read", "registry:write", "admin")
async def compatibility(
    request: Request,
    subject: str = "",
    _: Principal = Depends(readers),
    svc: Services = Depends(services),
) -> Response:
    return await _compat_page(request, svc, subject[:255])


def _check(svc: Services, me: Principal, subject: str, candidate: str) -> dict[str, Any]:
    fields, parse_error = _classified(candidate)
    try:
        latest = svc.registry.latest_fields(subject)
    except ExchangeError:
        latest = None
    try:
        problems = svc.registry.check(
            subject, candidate, [], None, schema_type="AVRO", actor_is_admin=me.has("admin")
        )
    except ExchangeError as exc:
        problems = [exc.message]
    return {
        "compatible": not problems and parse_error is None,
        "messages": problems + ([parse_error] if parse_error else []),
        "fields": fields,
        "downgrades": downgrades(latest, field_infos(candidate)) if latest and fields else [],
        "new_subject": latest is None,
    }


def _subject(request: Request, form: FormData, subject: str) -> str:
    """The form's subject (without JavaScript the URL holds a placeholder), made the route's
    so the registry's own checks see the subject that is acted on."""
    chosen = text(form, "subject", 255) or subject
    request.scope["path_params"]["subject"] = chosen
    return chosen


@router.post("/schemas/{subject}/check")
@access("registry:read", "registry:write", "admin")
async def check(
    subject: str,
    request: Request,
    me: Principal = Depends(readers),
    form: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    candidate = text(form, "schema", MAX_SCHEMA)
    subject = _subject(request, form, subject)
    result = await run_in_threadpool(_check, svc, me, subject, candidate)
    return await _compat_page(request, svc, subject, candidate, result)


@router.post("/schemas/{subject}/register")
@access("own:registry:write", "admin")
async def register(
    subject: str,
    request: Request,
    me: Principal = Depends(console_principal),
    form: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    """Registering needs what the registry API needs: registry:write for a subject of the
    person's own department (or admin); its ``writer`` check decides and audits."""
    candidate = text(form, "schema", MAX_SCHEMA)
    subject = _subject(request, form, subject)
    caller = registry_routes.Caller(me.client_id, me.department, me.roles)

    def run() -> int:
        registry_routes.writer(request, caller, svc)
        return svc.registry.register(
            subject, candidate, [], actor=me.client_id, actor_is_admin=me.has("admin")
        )

    try:
        schema_id = await run_in_threadpool(run)
    except ExchangeError as exc:
        result = await run_in_threadpool(_check, svc, me, subject, candidate)
        result["refused"] = exc.message
        return await _compat_page(
            request, svc, subject, candidate, result, await refused(request, exc)
        )
    response = redirect(request, f"/console/dev/schemas/{subject}")
    flash(request, response, {"registered": str(schema_id)})
    return response


# -- publishing a sample and watching it arrive -------------------------------------------
async def _try_page(
    request: Request,
    svc: Services,
    me: Principal,
    status: int = 200,
    sub: str = "",
    **values: Any,
) -> Response:
    def load() -> tuple[list[CatalogEntry], str]:
        own = svc.catalog.search(None, me.department, None)
        # Only a subscription of the person's department is shown (the records endpoint
        # checks again); anything else is silently dropped from the page.
        try:
            mine = svc.subscriptions.get(sub, me.department) if sub else None
        except ExchangeError:
            mine = None
        return own, mine.topic if mine is not None and mine.status == "active" else ""

    own, sub_topic = await run_in_threadpool(load)
    return render(
        request,
        "dev/try.html",
        status,
        topics=own,
        sub=sub if sub_topic else "",
        sub_topic=sub_topic,
        can_subscribe=me.has("subscriber"),
        **values,
    )


@router.get("/try")
@access("publisher")
async def try_page(
    request: Request,
    topic: str = "",
    sub: str = "",
    me: Principal = Depends(publishers),
    svc: Services = Depends(services),
) -> Response:
    return await _try_page(request, svc, me, sub=sub[:64], topic=topic[:255], record="")


@router.post("/try")
@access("own:publisher")
async def try_publish(
    request: Request,
    me: Principal = Depends(publishers),
    form: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    topic, record = text(form, "topic", 255), text(form, "record", MAX_SCHEMA)
    sub = text(form, "sub", 64)
    publisher = svc.publisher

    def run() -> Any:
        entry = publisher.authorize(me, topic)
        value = json.loads(record)
        result, _ = publisher.publish(me, entry, Batch([NewRecord(None, value, {})]))
        return result

    page: dict[str, Any] = {"topic": topic, "record": record, "sub": sub}
    try:
        result = await run_in_threadpool(run)
    except ValueError as exc:
        return await _try_page(request, svc, me, 422, error=str(exc), **page)
    except ExchangeError as exc:
        error = exc.message + "".join(
            f"; {e.get('path', '')}: {e.get('reason', '')}" for e in exc.details.get("errors", [])
        )
        status = await refused(request, exc)
        return await _try_page(request, svc, me, status, error=error, **page)
    return await _try_page(request, svc, me, published=result, **page)


@router.post("/try/subscribe")
@access("own:subscriber")
async def try_subscribe(
    request: Request,
    me: Principal = Depends(subscribers),
    form: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    """A test subscription of the person's department on ``topic``, from the latest offset:
    the person's own open pull subscription on it is reused, otherwise one is created by the
    API's own route (same agreement check, same audit record)."""
    topic = text(form, "topic", 255)

    def existing() -> str | None:
        for s in svc.subscriptions.for_consumer(me.department):
            if (
                s.topic == topic
                and s.client_id == me.client_id
                and s.status == "active"
                and s.webhook_url is None
                and s.fields is None
            ):
                return s.id
        return None

    sub_id = await run_in_threadpool(existing)
    if sub_id is None:
        body = subscription_routes.SubscriptionIn(topic=topic, start="latest")
        try:
            sub_id = (await subscription_routes.create(body, me, svc)).id
        except ExchangeError as exc:
            status = await refused(request, exc)
            return await _try_page(
                request, svc, me, status, topic=topic, record="", error=exc.message
            )
    return redirect(request, f"/console/dev/try?{urlencode({'topic': topic, 'sub': sub_id})}")


@router.get("/try/subscriptions/{sub_id}/records")
@access("own:subscriber")
async def try_records(
    sub_id: str,
    cursor: str = "",
    me: Principal = Depends(subscribers),
    svc: Services = Depends(services),
) -> Response:
    """One page of the test subscription through the API's pull route (a second's wait at
    most; the browser keeps the cursor, nothing is committed)."""
    return await subscription_routes.records(sub_id, 50, 1000, cursor[:4096] or None, me, svc)

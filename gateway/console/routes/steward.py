"""The steward's pages: the inbox of agreement requests for the department's data (deadline
countdown, each field with its classification), the decision (approve with field narrowing,
reject with a reason, suspend / resume / revoke), and who reads which fields today.

The same ``Agreements`` service and the same rule as ``/v1/agreements/{id}/approve``: only a
steward of the owning department (``own:steward``). A steward of another department gets
"not found" on every URL here (audited), exactly as the API answers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from consent.agreements import Agreement, Agreements
from consent.catalog import Catalog
from consent.errors import AgreementNotFound
from consent.stewardship import StewardView, consumers, inbox, view
from exchange.errors import Conflict, ExchangeError, NotFound
from exchange.identity.tokens import Principal
from gateway.access import access
from gateway.auth import services
from gateway.console.session import checked_form, console_require
from gateway.console.web import redirect, render
from gateway.container import Services
from gateway.denials import audit_denial

router = APIRouter(prefix="/console/steward", include_in_schema=False)
steward = console_require("steward")
Action = Literal["approve", "reject", "suspend", "resume", "revoke"]


async def _not_found(request: Request) -> Response:
    """The answer to a stranger (another department) and to a missing agreement alike."""
    if not await audit_denial(request, 404, "not_found"):
        return render(request, "error.html", 503, message="error.unavailable")
    return render(request, "error.html", 404, message="steward.error.not_found")


def _owns(me: Principal, dept: str) -> bool:
    return me.department == dept and not me.has("auditor")


def _views(svc: Services, me: Principal, agreements: list[Agreement]) -> list[StewardView]:
    """Each agreement with its fields' classifications from the topic's current schema."""
    catalog: Catalog = svc.catalog
    lookup = svc.agreements.field_lookup
    now = datetime.now(UTC)
    known: dict[str, Any] = {}
    out = []
    for a in agreements:
        if a.topic not in known:
            try:
                known[a.topic] = lookup(catalog.get(a.topic)) if lookup else None
            except NotFound:  # the topic was deleted since: fields show as unknown
                known[a.topic] = None
        out.append(view(a, known[a.topic], now))
    return out


def _owned(svc: Services, me: Principal) -> list[StewardView]:
    agreements: Agreements = svc.agreements
    mine = [a for a in agreements.list(me) if a.owner == me.department]
    return _views(svc, me, mine)


@router.get("")
@access("steward")
async def home(request: Request, me: Principal = Depends(steward)) -> Response:
    return redirect(request, f"/console/steward/{me.department}")


@router.get("/{dept}")
@access("own:steward")
async def requests(
    request: Request, dept: str, me: Principal = Depends(steward), svc: Services = Depends(services)
) -> Response:
    if not _owns(me, dept):
        return await _not_found(request)
    owned = await run_in_threadpool(_owned, svc, me)
    return render(request, "steward/inbox.html", dept=dept, items=inbox(owned))


@router.get("/{dept}/consumers")
@access("own:steward")
async def consumers_today(
    request: Request, dept: str, me: Principal = Depends(steward), svc: Services = Depends(services)
) -> Response:
    if not _owns(me, dept):
        return await _not_found(request)
    owned = await run_in_threadpool(_owned, svc, me)
    live = consumers(owned, datetime.now(UTC))
    subs = await run_in_threadpool(svc.subscriptions.on_topics, [v.agreement.topic for v in live])
    by_pair: dict[tuple[str, str], list[Any]] = {}
    for sub in subs:
        by_pair.setdefault((sub.consumer, sub.topic), []).append(sub)
    return render(
        request,
        "steward/consumers.html",
        dept=dept,
        items=live,
        subs=by_pair,
    )


async def _agreement_view(svc: Services, me: Principal, agreement_id: str) -> StewardView | None:
    try:
        a = await run_in_threadpool(svc.agreements.get, agreement_id, me)
    except AgreementNotFound:
        return None
    if a.owner != me.department:  # the consumer's own steward reads it, but does not decide
        return None
    return (await run_in_threadpool(_views, svc, me, [a]))[0]


@router.get("/{dept}/agreements/{agreement_id}")
@access("own:steward")
async def agreement(
    request: Request,
    dept: str,
    agreement_id: str,
    me: Principal = Depends(steward),
    svc: Services = Depends(services),
) -> Response:
    v = await _agreement_view(svc, me, agreement_id) if _owns(me, dept) else None
    if v is None:
        return await _not_found(request)
    return render(request, "steward/agreement.html", dept=dept, item=v)


@router.post("/{dept}/agreements/{agreement_id}/{action}")
@access("own:steward")
async def decide(
    request: Request,
    dept: str,
    agreement_id: str,
    action: Action,
    me: Principal = Depends(steward),
    form: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    v = await _agreement_view(svc, me, agreement_id) if _owns(me, dept) else None
    if v is None:
        return await _not_found(request)
    reason = str(form.get("reason") or "").strip() or None
    try:
        await run_in_threadpool(_apply, svc.agreements, me, agreement_id, action, form, reason)
    except ExchangeError as exc:
        status = 409 if isinstance(exc, Conflict) else 422
        return render(
            request,
            "steward/agreement.html",
            status,
            dept=dept,
            item=v,
            error=exc.message,
            failed=action,
        )
    return redirect(request, f"/console/steward/{dept}/agreements/{agreement_id}?done={action}")


def _apply(
    agreements: Agreements,
    me: Principal,
    agreement_id: str,
    action: Action,
    form: FormData,
    reason: str | None,
) -> Agreement:
    if action == "approve":
        fields = [str(f) for f in form.getlist("fields")]
        return agreements.approve(agreement_id, me, fields)
    if action == "reject":
        return agreements.reject(agreement_id, me, reason or "")
    if action == "suspend":
        return agreements.suspend(agreement_id, me, reason)
    if action == "resume":
        return agreements.resume(agreement_id, me)
    return agreements.revoke(agreement_id, me, reason)

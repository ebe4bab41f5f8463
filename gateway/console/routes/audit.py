"""The security officer's pages: event browser, event detail with the in-browser proof check,
"who accessed data subject X", checkpoint history, activity charts and exports.

The same service (``svc.audit_review``) and the same rule as ``/v1/audit`` (the ``auditor``
role only: an admin is refused), and every read is itself audited. The proofs are checked by
``static/js/verify.js`` in the officer's browser against the key the officer pinned.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from audit.keys import fingerprint
from audit.queries import OUTCOMES, Filters, Window
from audit.service import MAX_PAGE, AuditService
from exchange.errors import ExchangeError, InvalidInput, NotFound
from exchange.identity.tokens import Principal
from gateway.access import access
from gateway.auth import services
from gateway.console import i18n
from gateway.console.session import checked_form, console_require
from gateway.console.web import render
from gateway.container import Services
from gateway.denials import audit_denial
from gateway.routes.audit import record_read, stream_export

router = APIRouter(prefix="/console/audit", include_in_schema=False)
auditor = console_require("auditor")
PAGE = 50
TYPES = (  # suggestions for the event-type field (any dotted name or prefix.* works)
    "*",
    "record.*",
    "records.delivered",
    "schema.*",
    "agreement.*",
    "consent.*",
    "key.*",
    "kek.*",
    "admin.*",
    "token.*",
    "auth.denied",
    "authz.denied",
    "access.denied",
    "console.*",
    "audit.read",
)
RANGES = {
    "1h": (timedelta(hours=1), "minute"),
    "24h": (timedelta(days=1), "hour"),
    "7d": (timedelta(days=7), "hour"),
    "30d": (timedelta(days=30), "day"),
}
_TEXT = ("department", "client", "topic", "type")


def _review(svc: Services) -> AuditService:
    return svc.audit_review


def _when(value: str, tz_minutes: int) -> datetime | None:
    """A time typed in the browser (``datetime-local``: no zone) in the browser's zone, which
    ``audit.js`` sends as minutes east of UTC; a full ISO time keeps its own zone."""
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"not a date and time: {value[:40]!r}", code="bad_time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone(timedelta(minutes=tz_minutes)))
    return dt


def _tz(raw: str) -> int:
    try:
        minutes = int(raw or 0)
    except ValueError:
        raise InvalidInput("tz must be minutes east of UTC", code="bad_time") from None
    if not -16 * 60 <= minutes <= 16 * 60:
        raise InvalidInput("tz must be minutes east of UTC", code="bad_time")
    return minutes


def filters_from(q: Mapping[str, str]) -> Filters:
    """The officer's filter form (query string) as :class:`Filters`; bad input raises."""
    tz = _tz(q.get("tz", ""))
    text = {k: (q.get(k) or "").strip() or None for k in _TEXT}
    outcome = "denied" if q.get("denied") else None
    return Filters(
        since=_when(q.get("from", ""), tz),
        until=_when(q.get("to", ""), tz),
        department=text["department"],
        client=text["client"],
        topic=text["topic"],
        type=text["type"],
        outcome=outcome,
    )


def _after(raw: str | None) -> int:
    try:
        after = int(raw) if raw else -1
    except ValueError:
        raise InvalidInput("after must be an event index") from None
    if after < -1:
        raise InvalidInput("after must be an event index")
    return after


def _limit(raw: str | None, default: int = PAGE) -> int:
    try:
        n = int(raw) if raw else default
    except ValueError:
        raise InvalidInput("limit must be a number") from None
    if not 1 <= n <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
    return n


def _proof_block(svc: Services, cp_note: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the browser needs to check the rows itself (and the key the server offers)."""
    key = _review(svc).signer.verifier.encode()
    return {
        "checkpoint": cp_note,
        "offered_key": key,
        "offered_fingerprint": fingerprint(key),
        "rows": [
            {"index": r["event"]["index"], "entry": r["entry"], "proof": r["proof"]} for r in rows
        ],
    }


def _page(request: Request, template: str, status: int = 200, **values: Any) -> Response:
    """A page with the texts its script shows in the page's language (and the department
    names the filter fields suggest)."""
    svc: Services = request.app.state.services
    values.setdefault("departments", sorted(d.id for d in svc.identity.list_departments()))
    texts = i18n.catalog(i18n.language(request))
    messages = {
        k.removeprefix("audit.js."): v for k, v in texts.items() if k.startswith("audit.js.")
    }
    return render(request, template, status, js_messages=messages, **values)


async def _not_found(request: Request) -> Response:
    if not await audit_denial(request, 404, "not_found"):
        return render(request, "error.html", 503, message="error.unavailable")
    return render(request, "error.html", 404, message="audit.error.not_found")


@router.get("")
@access("auditor")
async def browser(
    request: Request, me: Principal = Depends(auditor), svc: Services = Depends(services)
) -> Response:
    q = request.query_params
    values = {k: q.get(k, "") for k in ("from", "to", "tz", "denied", *_TEXT)}
    recent = not any(values.values()) and "after" not in q  # a bare visit: the last day
    try:
        f = Filters(since=datetime.now(UTC) - timedelta(days=1)) if recent else filters_from(q)
        after, limit = _after(q.get("after")), _limit(q.get("limit"))
    except ExchangeError as exc:
        return _page(
            request, "audit/events.html", 422, values=values, types=TYPES, error=exc.message
        )
    await record_read(
        svc, me, "console.events", **{k: v for k, v in values.items() if v and k != "tz"}
    )
    found = await run_in_threadpool(_review(svc).query, f, after, limit)
    nxt = found[-1].index if len(found) == limit else None
    query = {k: v for k, v in values.items() if v}
    return _page(
        request,
        "audit/events.html",
        values=values,
        types=TYPES,
        events=[e.to_json() for e in found],
        searched=True,
        recent=recent,
        next_url=f"/console/audit?{urlencode({**query, 'after': nxt})}" if nxt is not None else "",
        export_url=f"/console/audit/export?{urlencode({**query, 'after': after})}",
    )


@router.get("/events/{index}")
@access("auditor")
async def event(
    request: Request,
    index: int = Path(ge=0, le=2**62),
    me: Principal = Depends(auditor),
    svc: Services = Depends(services),
) -> Response:
    await record_read(svc, me, "console.event", index=index)
    try:
        cp, row = await run_in_threadpool(_review(svc).event, index)
    except NotFound:
        return await _not_found(request)
    return _page(
        request,
        "audit/event.html",
        ev=row["event"],
        row=row,
        data_text=json.dumps(row["event"]["data"], indent=2, ensure_ascii=False, sort_keys=True),
        checkpoint=cp.note,
        proof=_proof_block(svc, cp.note, [row]),
    )


@router.get("/subjects")
@access("auditor")
async def subject_form(request: Request, me: Principal = Depends(auditor)) -> Response:
    return _page(request, "audit/subjects.html")


@router.post("/subjects", response_model=None)
@access("auditor")
async def subject_search(
    request: Request,
    me: Principal = Depends(auditor),
    form: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    """POST, so the raw id never appears in a URL (URLs end up in logs and browser history)."""
    subject = str(form.get("subject") or "").strip()
    fmt = str(form.get("format") or "html")
    try:
        if not 0 < len(subject) <= 300:
            raise InvalidInput("type the data subject's id (at most 300 characters)")
        if fmt not in ("html", "csv", "jsonl"):
            raise InvalidInput("format must be html, csv or jsonl")
        after, limit = _after(str(form.get("after") or "")), _limit(None, MAX_PAGE)
        f = Filters(subject=subject)
    except ExchangeError as exc:
        return _page(request, "audit/subjects.html", 422, error=exc.message, subject=subject)
    await record_read(svc, me, "console.subject_search", subject=subject, format=fmt)
    if fmt != "html":  # every access to the subject, however many
        return await run_in_threadpool(stream_export, _review(svc), f, after, fmt, "audit-subject")
    found = await run_in_threadpool(_review(svc).query, f, after, limit)
    cp, rows = await run_in_threadpool(_review(svc).with_proofs, found)
    return _page(
        request,
        "audit/subjects.html",
        subject=subject,
        events=[r["event"] for r in rows],
        next_after=found[-1].index if len(found) == limit else None,
        proof=_proof_block(svc, cp.note, rows),
        searched=True,
    )


@router.get("/export", response_model=None)
@access("auditor")
async def export(
    request: Request, me: Principal = Depends(auditor), svc: Services = Depends(services)
) -> Response:
    """The browser's current filters as one CSV or JSONL file with proofs, every matching
    event from ``after`` however many (streamed page by page)."""
    q = request.query_params
    fmt = q.get("format", "csv")
    try:
        if fmt not in ("csv", "jsonl"):
            raise InvalidInput("format must be csv or jsonl")
        f = filters_from(q)
        after = _after(q.get("after"))
    except ExchangeError as exc:
        values = {k: q.get(k, "") for k in ("from", "to", "tz", "denied", *_TEXT)}
        return _page(
            request, "audit/events.html", 422, values=values, types=TYPES, error=exc.message
        )
    shown = {k: q[k] for k in ("from", "to", "denied", *_TEXT) if q.get(k)}
    await record_read(svc, me, "console.export", format=fmt, after=after, **shown)
    return await run_in_threadpool(stream_export, _review(svc), f, after, fmt, "audit-events")


@router.get("/checkpoints")
@access("auditor")
async def checkpoints(
    request: Request, me: Principal = Depends(auditor), svc: Services = Depends(services)
) -> Response:
    raw = request.query_params.get("before")
    try:
        before = int(raw) if raw else None
        if before is not None and before < 1:
            raise ValueError
    except ValueError:
        return _page(request, "audit/checkpoints.html", 422, error="audit.error.before", links=[])
    await record_read(svc, me, "console.checkpoints", before=before)
    links = await run_in_threadpool(_review(svc).checkpoint_history, 20, before)
    # One more than shown: the oldest row's predecessor, for the browser's consistency check.
    extra = await run_in_threadpool(
        _review(svc).checkpoint_history, 1, links[-1].size if links else None
    )
    key = _review(svc).signer.verifier.encode()
    chain = [link.to_json() for link in links + extra[:1]] if links else []
    return _page(
        request,
        "audit/checkpoints.html",
        links=links,
        next_before=links[-1].size if len(links) == 20 else None,
        chain={"checkpoints": chain, "offered_key": key, "offered_fingerprint": fingerprint(key)},
    )


@router.get("/activity")
@access("auditor")
async def activity(
    request: Request, me: Principal = Depends(auditor), svc: Services = Depends(services)
) -> Response:
    span = request.query_params.get("range", "24h")
    department = (request.query_params.get("department") or "").strip() or None
    if span not in RANGES or (department is not None and len(department) > 300):
        return _page(
            request,
            "audit/activity.html",
            422,
            error="audit.error.range",
            span="24h",
            ranges=list(RANGES),
            department=department or "",
        )
    length, bucket = RANGES[span]
    now = datetime.now(UTC)
    await record_read(svc, me, "console.activity", department=department, range=span)
    data = await run_in_threadpool(
        _review(svc).activity, Window(now - length, now, bucket), department
    )
    return _page(
        request,
        "audit/activity.html",
        data=data,
        span=span,
        ranges=list(RANGES),
        department=department or "",
        outcomes=OUTCOMES,
    )


@router.get("/key")
@access("auditor")
async def key(
    request: Request, me: Principal = Depends(auditor), svc: Services = Depends(services)
) -> Response:
    """Pin the checkpoint key in this browser (compared with what ``exchange up`` printed)."""
    offered = _review(svc).signer.verifier.encode()
    return _page(
        request,
        "audit/key.html",
        offered=offered,
        offered_fingerprint=fingerprint(offered),
    )

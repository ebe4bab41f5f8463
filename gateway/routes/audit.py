"""Security-officer review of the audit log: checkpoints, proofs, queries and exports.

Only the ``auditor`` role may read (an admin gets 403), and every read is itself audited;
a ``subject`` filter is hashed with the audit key and never stored or logged raw.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from audit.events import AuditEvent
from audit.export import stream_csv, stream_jsonl, to_csv, to_jsonl
from audit.queries import Filters, Window, utc
from audit.service import AuditService
from exchange.auditing import AuditRecord
from exchange.errors import InvalidInput
from exchange.federation.sites import Federation
from exchange.identity.tokens import Principal
from gateway.access import access
from gateway.auth import require, services
from gateway.container import Services

router = APIRouter(prefix="/v1/audit", tags=["audit"])
auditor = require("auditor")


def _service(svc: Services = Depends(services)) -> AuditService:
    return svc.audit_review


async def record_read(
    svc: Services, who: Principal, what: str, subject: str | None = None, **data: Any
) -> None:
    """Record the officer's read first: no record, no answer (fail closed)."""
    await run_in_threadpool(
        svc.audit.append,
        AuditRecord(
            "audit.read",
            actor=who.client_id,
            department=who.department,
            data={"what": what, **{k: v for k, v in data.items() if v is not None}},
            subjects=(subject,) if subject else (),
        ),
    )


@router.get("/checkpoint", summary="The latest signed checkpoint (C2SP signed note)")
@access("auditor")
async def checkpoint(
    fresh: bool = Query(False, description="Sign the current head now if it is newer"),
    who: Principal = Depends(auditor),
    svc: Services = Depends(services),
    service: AuditService = Depends(_service),
) -> dict[str, Any]:
    await record_read(svc, who, "checkpoint")
    cp = await run_in_threadpool(service.latest_checkpoint)
    if cp is None or fresh:
        cp = await run_in_threadpool(service.checkpoint)
    return {
        "size": cp.size,
        "root": cp.root.hex(),
        "hash": service.h.name,
        "checkpoint": cp.note,
        "verifier_key": service.signer.verifier.encode(),
    }


@router.get("/witnessed", summary="Our checkpoints other sites cosigned, and the sites' keys")
@access("auditor")
async def witnessed(
    who: Principal = Depends(auditor), svc: Services = Depends(services)
) -> dict[str, Any]:
    """The kept cosigned notes (``federation/cosigned/``) and the known sites' identity keys,
    unchecked: ``exchange audit verify`` checks the witness signatures and holds the log to
    each cosigned root (pin the keys with ``--witness-key``)."""
    await record_read(svc, who, "witnessed")
    fed = Federation(svc.settings.resolved_home)

    def read() -> dict[str, Any]:
        return {
            "notes": [{"name": p.name, "note": n} for p, n in fed.cosigned_notes()],
            "witnesses": [{"name": s.name, "public_key": s.public_key} for s in fed.sites()],
        }

    return await run_in_threadpool(read)


@router.get("/proofs/inclusion", summary="RFC 9162 inclusion proof of leaf `index` in tree `size`")
@access("auditor")
async def inclusion(
    index: int = Query(ge=0),
    size: int | None = Query(None, ge=1, description="Default: the latest checkpoint's size"),
    who: Principal = Depends(auditor),
    svc: Services = Depends(services),
    service: AuditService = Depends(_service),
) -> dict[str, Any]:
    await record_read(svc, who, "inclusion_proof", index=index, size=size)
    if size is None:
        size = (await run_in_threadpool(service.covering_checkpoint, index + 1)).size
    return await run_in_threadpool(service.inclusion, index, size)


@router.get("/proofs/consistency", summary="RFC 9162 consistency proof between two tree sizes")
@access("auditor")
async def consistency(
    first: int = Query(alias="from", ge=0),
    second: int = Query(alias="to", ge=0),
    who: Principal = Depends(auditor),
    svc: Services = Depends(services),
    service: AuditService = Depends(_service),
) -> dict[str, Any]:
    await record_read(svc, who, "consistency_proof", first=first, second=second)
    return await run_in_threadpool(service.consistency, first, second)


Format = Literal["json", "jsonl", "csv"]
_FILTERS = ("from", "to", "department", "client", "topic", "type", "outcome")
_PAGING = ("after", "limit", "format")


def _only(*names: str) -> Callable[[Request], None]:
    """Refuse query parameters the route does not know: a misspelt filter must not silently
    widen an officer's search to everything."""
    allowed = frozenset(names)

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise InvalidInput(
                f"unknown query parameter: {', '.join(unknown)}", code="unknown_parameter"
            )

    return check


def export_file(
    service: AuditService, found: list[AuditEvent], limit: int, format: str, stem: str
) -> Response:
    """A page of events with their proofs against one checkpoint, as a JSONL or CSV file."""
    cp, rows = service.with_proofs(found)
    key = service.signer.verifier.encode()
    nxt = found[-1].index if len(found) == limit else None
    headers = {
        "Content-Disposition": f'attachment; filename="{stem}.{format}"',
        "X-Audit-Next": str(nxt) if nxt is not None else "",
    }
    if format == "jsonl":
        return StreamingResponse(
            to_jsonl(cp.note, key, rows), media_type="application/x-ndjson", headers=headers
        )
    headers["X-Audit-Checkpoint"] = base64.b64encode(cp.note.encode()).decode()
    headers["X-Audit-Verifier-Key"] = key
    return Response(to_csv(rows, checkpoint=(cp.note, key)), media_type="text/csv", headers=headers)


def stream_export(
    service: AuditService, f: Filters, after: int, format: str, stem: str
) -> StreamingResponse:
    """Every matching event after ``after`` as one JSONL or CSV file of any size, streamed
    page by page (constant memory), each proof against the checkpoint signed as it starts
    (the JSONL's first line; ``X-Audit-Checkpoint`` for both)."""
    cp, pages = service.export(f, after)
    key = service.signer.verifier.encode()
    headers = {
        "Content-Disposition": f'attachment; filename="{stem}.{format}"',
        "X-Audit-Checkpoint": base64.b64encode(cp.note.encode()).decode(),
        "X-Audit-Verifier-Key": key,
        "Cache-Control": "no-store",
    }
    if format == "jsonl":
        body = stream_jsonl(cp.note, key, pages)
        return StreamingResponse(body, media_type="application/x-ndjson", headers=headers)
    body = stream_csv(cp.note, key, pages)
    return StreamingResponse(body, media_type="text/csv", headers=headers)


def answer(
    service: AuditService, found: list[AuditEvent], limit: int, format: Format, stem: str
) -> Response | dict[str, Any]:
    """One page of events with their proofs against one checkpoint, as JSON or a file."""
    if format != "json":
        return export_file(service, found, limit, format, stem)
    cp, rows = service.with_proofs(found)
    nxt = found[-1].index if len(found) == limit else None
    key = service.signer.verifier.encode()
    return {"events": rows, "next": nxt, "checkpoint": cp.note, "verifier_key": key}


@router.get(
    "/events",
    summary="Search events; export as JSON, JSONL or CSV with proofs",
    response_model=None,
)
@access("auditor")
async def events(
    since: datetime | None = Query(None, alias="from", description="From this time"),
    until: datetime | None = Query(None, alias="to", description="Before this time"),
    department: str | None = None,
    client: str | None = Query(None, description="Acting client id"),
    topic: str | None = None,
    type: str | None = Query(
        None, description="Event type, e.g. record.published, or a prefix such as schema.*"
    ),
    outcome: Literal["ok", "denied", "error"] | None = Query(None, description="e.g. denied"),
    subject: str | None = Query(
        None,
        description="Raw data-subject id, hashed server-side (prefer POST /v1/audit/subjects/"
        "search: a URL ends up in logs)",
    ),
    after: int = Query(-1, ge=-1, description="Paging cursor: events with a greater index"),
    limit: int = Query(100, ge=1, le=1000),
    format: Format = "json",
    who: Principal = Depends(auditor),
    _: None = Depends(_only(*_FILTERS, *_PAGING, "subject")),
    svc: Services = Depends(services),
    service: AuditService = Depends(_service),
) -> Response | dict[str, Any]:
    f = Filters(since, until, department, client, topic, type, subject, outcome)
    await record_read(
        svc,
        who,
        "events",
        subject=subject,
        department=department,
        client=client,
        topic=topic,
        type=type,
        outcome=outcome,
        since=since.isoformat() if since else None,
        until=until.isoformat() if until else None,
        subject_filter=subject is not None or None,
        format=format,
    )
    found = await run_in_threadpool(service.query, f, after, limit)
    return await run_in_threadpool(answer, service, found, limit, format, "audit-events")


class SubjectSearch(BaseModel):
    """The raw id travels in the body, never in a URL (URLs end up in proxy logs)."""

    model_config = ConfigDict(extra="forbid")
    subject: str = Field(min_length=1, max_length=300, description="Raw data-subject id")
    after: int = Field(-1, ge=-1)
    limit: int = Field(100, ge=1, le=1000)
    format: Format = "json"


@router.post(
    "/subjects/search",
    summary="Who accessed data subject X: every event that touched the subject's records",
    response_model=None,
)
@access("auditor")
async def subject_search(
    body: SubjectSearch,
    who: Principal = Depends(auditor),
    svc: Services = Depends(services),
    service: AuditService = Depends(_service),
) -> Response | dict[str, Any]:
    await record_read(svc, who, "subject_search", subject=body.subject, format=body.format)
    found = await run_in_threadpool(
        service.query, Filters(subject=body.subject), body.after, body.limit
    )
    return await run_in_threadpool(answer, service, found, body.limit, body.format, "audit-subject")


@router.get("/events/{index}", summary="One event with its inclusion proof and checkpoint")
@access("auditor")
async def event(
    index: int = Path(ge=0, le=2**62),
    who: Principal = Depends(auditor),
    _: None = Depends(_only()),
    svc: Services = Depends(services),
    service: AuditService = Depends(_service),
) -> dict[str, Any]:
    await record_read(svc, who, "event", index=index)
    cp, row = await run_in_threadpool(service.event, index)
    return {**row, "checkpoint": cp.note, "verifier_key": service.signer.verifier.encode()}


@router.get("/checkpoints", summary="Signed checkpoints, newest first, with consistency status")
@access("auditor")
async def checkpoints(
    before: int | None = Query(None, ge=1, description="Paging: checkpoints of smaller size"),
    limit: int = Query(50, ge=1, le=1000),
    who: Principal = Depends(auditor),
    _: None = Depends(_only("before", "limit")),
    svc: Services = Depends(services),
    service: AuditService = Depends(_service),
) -> dict[str, Any]:
    await record_read(svc, who, "checkpoints", before=before)
    links = await run_in_threadpool(service.checkpoint_history, limit, before)
    return {
        "checkpoints": [link.to_json() for link in links],
        "next": links[-1].size if len(links) == limit else None,
        "hash": service.h.name,
        "verifier_key": service.signer.verifier.encode(),
    }


@router.get("/activity", summary="Events and denials over time, per department")
@access("auditor")
async def activity(
    since: datetime | None = Query(None, alias="from", description="Default: 24 hours ago"),
    until: datetime | None = Query(None, alias="to", description="Default: now"),
    bucket: Literal["minute", "hour", "day"] = "hour",
    department: str | None = Query(None, min_length=1, max_length=300),
    who: Principal = Depends(auditor),
    _: None = Depends(_only("from", "to", "bucket", "department")),
    svc: Services = Depends(services),
    service: AuditService = Depends(_service),
) -> dict[str, Any]:
    end = utc(until) if until else datetime.now(UTC)
    start = utc(since) if since else end - timedelta(days=1)
    w = Window(start, end, bucket)
    await record_read(svc, who, "activity", department=department, bucket=bucket)
    return await run_in_threadpool(service.activity, w, department)

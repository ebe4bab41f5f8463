"""Security-officer review of the audit log: checkpoints, proofs, queries and exports.

Only the ``auditor`` role may read (an admin gets 403), and every read is itself audited;
a ``subject`` filter is hashed with the audit key and never stored or logged raw.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from audit.service import AuditService, Filters
from exchange.auditing import AuditRecord
from exchange.identity.tokens import Principal
from gateway.access import access
from gateway.auth import require, services
from gateway.container import Services

router = APIRouter(prefix="/v1/audit", tags=["audit"])
auditor = require("auditor")


def _service(svc: Services = Depends(services)) -> AuditService:
    return svc.audit_review


async def _audited(
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
    await _audited(svc, who, "checkpoint")
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


@router.get("/proofs/inclusion", summary="RFC 9162 inclusion proof of leaf `index` in tree `size`")
@access("auditor")
async def inclusion(
    index: int = Query(ge=0),
    size: int | None = Query(None, ge=1, description="Default: the latest checkpoint's size"),
    who: Principal = Depends(auditor),
    svc: Services = Depends(services),
    service: AuditService = Depends(_service),
) -> dict[str, Any]:
    await _audited(svc, who, "inclusion_proof", index=index, size=size)
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
    await _audited(svc, who, "consistency_proof", first=first, second=second)
    return await run_in_threadpool(service.consistency, first, second)


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
    type: str | None = Query(None, description="Event type, e.g. record.published"),
    subject: str | None = Query(None, description="Raw data-subject id; hashed server-side"),
    after: int = Query(-1, ge=-1, description="Paging cursor: events with a greater index"),
    limit: int = Query(100, ge=1, le=1000),
    format: Literal["json", "jsonl", "csv"] = "json",
    who: Principal = Depends(auditor),
    svc: Services = Depends(services),
    service: AuditService = Depends(_service),
) -> Response | dict[str, Any]:
    from audit.export import to_csv, to_jsonl

    f = Filters(since, until, department, client, topic, type, subject)
    await _audited(
        svc,
        who,
        "events",
        subject=subject,
        department=department,
        client=client,
        topic=topic,
        type=type,
        since=since.isoformat() if since else None,
        until=until.isoformat() if until else None,
        subject_filter=subject is not None or None,
        format=format,
    )
    found = await run_in_threadpool(service.query, f, after, limit)
    cp, rows = await run_in_threadpool(service.with_proofs, found)
    key = service.signer.verifier.encode()
    nxt = found[-1].index if len(found) == limit else None
    if format == "jsonl":
        return StreamingResponse(to_jsonl(cp.note, key, rows), media_type="application/x-ndjson")
    if format == "csv":
        headers = {
            "X-Audit-Next": str(nxt) if nxt is not None else "",
            "X-Audit-Checkpoint": base64.b64encode(cp.note.encode()).decode(),
            "X-Audit-Verifier-Key": key,
        }
        return Response(to_csv(rows), media_type="text/csv", headers=headers)
    return {"events": rows, "next": nxt, "checkpoint": cp.note, "verifier_key": key}

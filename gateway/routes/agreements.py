"""Sharing agreements over HTTP: subscribers request, the owner's steward decides."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Body, Depends, Query, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from consent.agreements import Agreement, Agreements
from dataplane.federation import refuse_mirrored
from exchange.identity.tokens import Principal
from gateway.access import ANY, access
from gateway.auth import principal, require, services
from gateway.container import Services

router = APIRouter(prefix="/v1/agreements", tags=["agreements"])


class AgreementIn(BaseModel):
    topic: str
    fields: list[str] = Field(min_length=1, description="Field paths asked for")
    purpose: str = Field(min_length=1, max_length=2000)
    legal_basis: str | None = Field(default=None, max_length=2000)
    valid_from: datetime | None = Field(default=None, description="Default: now")
    valid_until: datetime
    requires_subject_consent: bool = False


class ApproveIn(BaseModel):
    fields: list[str] | None = Field(default=None, description="Narrow the requested fields")


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class OptionalReasonIn(BaseModel):
    reason: str | None = Field(default=None, max_length=2000)


class AgreementOut(BaseModel):
    id: str
    status: str
    topic: str
    owner: str
    consumer: str
    requested_by: str
    fields: list[str]
    granted_fields: list[str] | None
    purpose: str
    legal_basis: str | None
    valid_from: datetime
    valid_until: datetime
    requires_subject_consent: bool
    reason: str | None
    requested_at: datetime
    respond_by: datetime
    overdue: bool
    decided_at: datetime | None
    decided_by: str | None


def _out(a: Agreement) -> AgreementOut:
    return AgreementOut(
        id=a.id,
        status=a.status.value,
        topic=a.topic,
        owner=a.owner,
        consumer=a.consumer,
        requested_by=a.requested_by,
        fields=list(a.fields),
        granted_fields=list(a.granted_fields) if a.granted_fields is not None else None,
        purpose=a.purpose,
        legal_basis=a.legal_basis,
        valid_from=a.valid_from,
        valid_until=a.valid_until,
        requires_subject_consent=a.requires_subject_consent,
        reason=a.reason,
        requested_at=a.requested_at,
        respond_by=a.respond_by,
        overdue=a.overdue(datetime.now(UTC)),
        decided_at=a.decided_at,
        decided_by=a.decided_by,
    )


def _agreements(svc: Services) -> Agreements:
    agreements: Agreements = svc.agreements
    return agreements


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AgreementOut)
@access("subscriber")
async def request_agreement(
    body: AgreementIn,
    who: Principal = Depends(require("subscriber")),
    svc: Services = Depends(services),
) -> AgreementOut:
    if svc.federation is not None:
        refuse_mirrored(
            svc.federation.sites.owner_of,
            body.topic,
            "its agreements are requested over the site link and decided",
        )
    a = await run_in_threadpool(
        lambda: _agreements(svc).request(
            who,
            topic=body.topic,
            fields=body.fields,
            purpose=body.purpose,
            legal_basis=body.legal_basis,
            valid_from=body.valid_from,
            valid_until=body.valid_until,
            requires_subject_consent=body.requires_subject_consent,
        )
    )
    return _out(a)


@router.get("", response_model=list[AgreementOut])
@access(ANY)
async def list_agreements(
    topic: str | None = None,
    status_: str | None = Query(default=None, alias="status"),
    overdue: bool | None = Query(default=None, description="Pending past the deadline"),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> list[AgreementOut]:
    found = await run_in_threadpool(
        lambda: _agreements(svc).list(who, topic=topic, status=status_, overdue=overdue)
    )
    return [_out(a) for a in found]


@router.get("/{agreement_id}", response_model=AgreementOut)
@access("admin", "auditor", "own:*")
async def get_agreement(
    agreement_id: str, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> AgreementOut:
    return _out(await run_in_threadpool(_agreements(svc).get, agreement_id, who))


@router.post("/{agreement_id}/approve", response_model=AgreementOut)
@access("own:steward")
async def approve(
    agreement_id: str,
    body: ApproveIn | None = Body(default=None),
    who: Principal = Depends(require("steward")),
    svc: Services = Depends(services),
) -> AgreementOut:
    fields = body.fields if body is not None else None
    return _out(await run_in_threadpool(_agreements(svc).approve, agreement_id, who, fields))


@router.post("/{agreement_id}/reject", response_model=AgreementOut)
@access("own:steward")
async def reject(
    agreement_id: str,
    body: ReasonIn,
    who: Principal = Depends(require("steward")),
    svc: Services = Depends(services),
) -> AgreementOut:
    return _out(await run_in_threadpool(_agreements(svc).reject, agreement_id, who, body.reason))


@router.post("/{agreement_id}/suspend", response_model=AgreementOut)
@access("own:steward")
async def suspend(
    agreement_id: str,
    body: OptionalReasonIn | None = Body(default=None),
    who: Principal = Depends(require("steward")),
    svc: Services = Depends(services),
) -> AgreementOut:
    reason = body.reason if body is not None else None
    return _out(await run_in_threadpool(_agreements(svc).suspend, agreement_id, who, reason))


@router.post("/{agreement_id}/resume", response_model=AgreementOut)
@access("own:steward")
async def resume(
    agreement_id: str,
    who: Principal = Depends(require("steward")),
    svc: Services = Depends(services),
) -> AgreementOut:
    return _out(await run_in_threadpool(_agreements(svc).resume, agreement_id, who))


@router.post("/{agreement_id}/revoke", response_model=AgreementOut)
@access("own:steward")
async def revoke(
    agreement_id: str,
    body: OptionalReasonIn | None = Body(default=None),
    who: Principal = Depends(require("steward")),
    svc: Services = Depends(services),
) -> AgreementOut:
    reason = body.reason if body is not None else None
    return _out(await run_in_threadpool(_agreements(svc).revoke, agreement_id, who, reason))

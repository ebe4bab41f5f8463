"""Data-subject consents over HTTP: recorded by ``consent_registrar`` clients of the topic's
owning department or of a consent-manager department an admin designated for it (never of the
consumer); see :mod:`consent.managers`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from consent.consents import Consent, Consents, ConsentVersion
from consent.managers import ConsentManagers, Designation
from dataplane.federation import refuse_mirrored
from exchange.identity.tokens import Principal
from gateway.access import ANY, PUBLIC, access
from gateway.auth import principal, require, services
from gateway.container import Services

router = APIRouter(prefix="/v1/consents", tags=["consents"])
REGISTRAR = "consent_registrar"


class ConsentIn(BaseModel):
    subject: str = Field(min_length=1, max_length=200, description="Data subject reference")
    consumer: str = Field(description="Department the consent lets read")
    topic: str
    purpose: str = Field(min_length=1, max_length=2000)
    fields: list[str] = Field(default_factory=list, description="Empty: all granted fields")
    valid_from: datetime | None = None
    valid_until: datetime


class LookupIn(BaseModel):
    subject: str = Field(min_length=1, max_length=200)


class ConsentOut(BaseModel):
    id: str
    version: int
    status: str
    consumer: str
    topic: str
    purpose: str
    fields: list[str]
    valid_from: datetime
    valid_until: datetime
    registrar_department: str
    artefact: str = Field(description="Compact JWS signed by the exchange (see /jwks)")


class VersionOut(BaseModel):
    version: int
    status: str
    artefact: str
    actor: str
    created_at: datetime


def _out(c: Consent) -> ConsentOut:
    return ConsentOut(
        id=c.id,
        version=c.version,
        status=c.status.value,
        consumer=c.consumer,
        topic=c.topic,
        purpose=c.purpose,
        fields=list(c.fields),
        valid_from=c.valid_from,
        valid_until=c.valid_until,
        registrar_department=c.registrar_department,
        artefact=c.artefact,
    )


def _version(v: ConsentVersion) -> VersionOut:
    return VersionOut(
        version=v.version,
        status=v.status.value,
        artefact=v.artefact,
        actor=v.actor,
        created_at=v.created_at,
    )


def _consents(svc: Services) -> Consents:
    consents: Consents = svc.consents
    return consents


@router.get("/jwks", summary="Public keys that verify consent artefacts")
@access(PUBLIC)
async def jwks(svc: Services = Depends(services)) -> dict[str, Any]:
    return _consents(svc).jwks()


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ConsentOut)
@access("own:consent_registrar")
async def record_consent(
    body: ConsentIn,
    who: Principal = Depends(require(REGISTRAR)),
    svc: Services = Depends(services),
) -> ConsentOut:
    if svc.federation is not None:
        refuse_mirrored(svc.federation.sites.owner_of, body.topic, "consents are recorded")
    c = await run_in_threadpool(
        lambda: _consents(svc).record(
            who,
            subject=body.subject,
            consumer=body.consumer,
            topic=body.topic,
            purpose=body.purpose,
            fields=body.fields,
            valid_from=body.valid_from,
            valid_until=body.valid_until,
        )
    )
    return _out(c)


@router.post("/lookup", response_model=list[ConsentOut], summary="A subject's consents")
@access(ANY)
async def lookup(
    body: LookupIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[ConsentOut]:
    # POST so the subject id stays out of URLs and access logs.
    return [_out(c) for c in await run_in_threadpool(_consents(svc).find, who, body.subject)]


class ManagerOut(BaseModel):
    owner: str
    manager: str
    designated_by: str
    designated_at: datetime


def _managers(svc: Services) -> ConsentManagers:
    return svc.consent_managers


def _manager(d: Designation) -> ManagerOut:
    return ManagerOut(
        owner=d.owner,
        manager=d.manager,
        designated_by=d.designated_by,
        designated_at=d.designated_at,
    )


@router.get(
    "/managers/{owner}",
    response_model=list[ManagerOut],
    summary="Departments whose registrars record consents for this owner's topics",
)
@access(ANY)
async def list_managers(
    owner: str, _: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[ManagerOut]:
    return [_manager(d) for d in await run_in_threadpool(_managers(svc).list, owner)]


@router.put(
    "/managers/{owner}/{manager}",
    response_model=ManagerOut,
    summary="Designate a consent-manager department for an owner (admin)",
)
@access("admin")
async def designate_manager(
    owner: str,
    manager: str,
    who: Principal = Depends(require("admin")),
    svc: Services = Depends(services),
) -> ManagerOut:
    return _manager(await run_in_threadpool(_managers(svc).designate, owner, manager, who))


@router.delete(
    "/managers/{owner}/{manager}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Withdraw a consent-manager designation (admin)",
)
@access("admin")
async def withdraw_manager(
    owner: str,
    manager: str,
    who: Principal = Depends(require("admin")),
    svc: Services = Depends(services),
) -> None:
    await run_in_threadpool(_managers(svc).withdraw, owner, manager, who)


@router.get("/{consent_id}", response_model=ConsentOut)
@access("admin", "auditor", "own:*")
async def get_consent(
    consent_id: str, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> ConsentOut:
    return _out(await run_in_threadpool(_consents(svc).get, consent_id, who))


@router.get("/{consent_id}/versions", response_model=list[VersionOut])
@access("admin", "auditor", "own:*")
async def consent_versions(
    consent_id: str, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[VersionOut]:
    return [_version(v) for v in await run_in_threadpool(_consents(svc).versions, consent_id, who)]


@router.post("/{consent_id}/revoke", response_model=ConsentOut)
@access("own:consent_registrar")
async def revoke(
    consent_id: str, who: Principal = Depends(require(REGISTRAR)), svc: Services = Depends(services)
) -> ConsentOut:
    return _out(await run_in_threadpool(_consents(svc).revoke, consent_id, who))


@router.post("/{consent_id}/pause", response_model=ConsentOut)
@access("own:consent_registrar")
async def pause(
    consent_id: str, who: Principal = Depends(require(REGISTRAR)), svc: Services = Depends(services)
) -> ConsentOut:
    return _out(await run_in_threadpool(_consents(svc).pause, consent_id, who))


@router.post("/{consent_id}/resume", response_model=ConsentOut)
@access("own:consent_registrar")
async def resume(
    consent_id: str, who: Principal = Depends(require(REGISTRAR)), svc: Services = Depends(services)
) -> ConsentOut:
    return _out(await run_in_threadpool(_consents(svc).resume, consent_id, who))

"""The data catalog: browse, search, AsyncAPI export."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from consent.asyncapi import asyncapi_document
from consent.catalog import Catalog, CatalogEntry
from dataplane.replica import RemoteAgreement, RemoteEntry
from exchange.errors import NotFound
from exchange.identity.tokens import Principal
from gateway.access import ANY, access
from gateway.auth import principal, services
from gateway.container import Services

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/catalog", tags=["catalog"])


class FieldOut(BaseModel):
    path: str
    classification: str
    data_subject: bool


class RemoteAgreementOut(BaseModel):
    id: str
    consumer: str
    granted_fields: list[str]
    purpose: str
    valid_from: datetime
    valid_until: datetime
    status: str


class CatalogEntryOut(BaseModel):
    topic: str
    owner: str
    title: str
    description: str
    update_cycle: str
    share_type: str
    value_subject: str
    partitions: int
    cipher: str
    legal_basis: str | None
    created_at: datetime
    fields: list[FieldOut] | None = None  # None: the registry has no schema for it (yet)
    site: str | None = Field(
        default=None,
        description="For a topic mirrored here from its owner site: that site (the entry is "
        "the owner's, replicated read-only)",
    )
    state_as_of: datetime | None = Field(
        default=None,
        description="Mirrored topic: when the owner site last said its replicated state is "
        "current (older than a minute: its agreements grant only public fields here)",
    )
    agreements: list[RemoteAgreementOut] | None = Field(
        default=None,
        description="Mirrored topic: the caller's department's agreements as the owner site "
        "replicated them (all of them for admin and auditor)",
    )


def _registry_version(svc: Services, entry: CatalogEntry) -> Any | None:
    try:
        return svc.registry.version(entry.value_subject, "latest")
    except NotFound:
        return None


def registry_fields(svc: Services, entry: CatalogEntry) -> Sequence[Any] | None:
    """The value schema's fields with their classification, or None if unknown."""
    return svc.registry.latest_fields(entry.value_subject)


def _schema_text(svc: Services, entry: CatalogEntry) -> str | None:
    version = _registry_version(svc, entry)
    return str(version.schema) if version is not None else None


def _out(svc: Services, e: CatalogEntry) -> CatalogEntryOut:
    fields = registry_fields(svc, e)
    return CatalogEntryOut(
        **{k: getattr(e, k) for k in CatalogEntry.__dataclass_fields__},
        fields=None
        if fields is None
        else [
            FieldOut(path=f.path, classification=str(f.classification), data_subject=f.data_subject)
            for f in fields
        ],
    )


def _catalog(svc: Services) -> Catalog:
    return svc.catalog


def _remote_out(
    e: RemoteEntry, agreements: list[RemoteAgreement], as_of: datetime | None
) -> CatalogEntryOut:
    return CatalogEntryOut(
        **{k: getattr(e.entry, k) for k in CatalogEntry.__dataclass_fields__},
        fields=[
            FieldOut(path=f.path, classification=str(f.classification), data_subject=f.data_subject)
            for f in e.fields
        ],
        site=e.site,
        state_as_of=as_of,
        agreements=[
            RemoteAgreementOut(
                id=a.id,
                consumer=a.consumer,
                granted_fields=list(a.granted_fields),
                purpose=a.purpose,
                valid_from=a.valid_from,
                valid_until=a.valid_until,
                status=a.status,
            )
            for a in agreements
        ],
    )


def _visible(who: Principal, agreements: list[RemoteAgreement]) -> list[RemoteAgreement]:
    if who.has("admin") or who.has("auditor"):
        return agreements
    return [a for a in agreements if a.consumer == who.department]


def _remote_matches(e: RemoteEntry, q: str | None, dept: str | None, share: str | None) -> bool:
    text = f"{e.entry.topic}\n{e.entry.title}\n{e.entry.description}".lower()
    return (
        (dept is None or e.entry.owner == dept)
        and (share is None or e.entry.share_type == share)
        and (not q or q.lower() in text)
    )


@router.get("", response_model=list[CatalogEntryOut])
@access(ANY)
async def search_catalog(
    q: str | None = Query(default=None, max_length=200, description="Text in name/title/desc."),
    dept: str | None = Query(default=None, description="Owner department"),
    share_type: str | None = Query(
        default=None, pattern="^(unconditional|conditional|not_shared)$"
    ),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> list[CatalogEntryOut]:
    def run() -> list[CatalogEntryOut]:
        local = [_out(svc, e) for e in _catalog(svc).search(q, dept, share_type)]
        if svc.federation is None:
            return local
        replica = svc.federation.replica
        remote = [
            _remote_out(e, _visible(who, replica.agreements(e.entry.topic)), replica.as_of(e.site))
            for e in replica.entries()
            if _remote_matches(e, q, dept, share_type)
        ]
        return sorted(local + remote, key=lambda o: o.topic)

    return await run_in_threadpool(run)


@router.get("/asyncapi", summary="The catalog as an AsyncAPI 3.0 document")
@access(ANY)
async def catalog_asyncapi(
    _: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        return asyncapi_document(
            _catalog(svc).search(),
            gateway_url=svc.settings.gateway_url,
            schema_for=lambda e: _schema_text(svc, e),
            fields_for=lambda e: registry_fields(svc, e),
        )

    return await run_in_threadpool(run)


@router.get("/{topic}", response_model=CatalogEntryOut)
@access(ANY)
async def get_entry(
    topic: str, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> CatalogEntryOut:
    """A topic's entry; for a topic mirrored from its owner site, the owner's replicated
    entry (``site`` names it) with the agreement state replicated with it."""
    if svc.federation is not None and (e := svc.federation.replica.entry(topic)) is not None:
        replica = svc.federation.replica
        return _remote_out(e, _visible(who, replica.agreements(topic)), replica.as_of(e.site))
    return await run_in_threadpool(lambda: _out(svc, _catalog(svc).get(topic)))

"""The data catalog: browse, search, AsyncAPI export."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from consent.asyncapi import asyncapi_document
from consent.catalog import Catalog, CatalogEntry
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


@router.get("", response_model=list[CatalogEntryOut])
@access(ANY)
async def search_catalog(
    q: str | None = Query(default=None, max_length=200, description="Text in name/title/desc."),
    dept: str | None = Query(default=None, description="Owner department"),
    share_type: str | None = Query(
        default=None, pattern="^(unconditional|conditional|not_shared)$"
    ),
    _: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> list[CatalogEntryOut]:
    def run() -> list[CatalogEntryOut]:
        return [_out(svc, e) for e in _catalog(svc).search(q, dept, share_type)]

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
    topic: str, _: Principal = Depends(principal), svc: Services = Depends(services)
) -> CatalogEntryOut:
    return await run_in_threadpool(lambda: _out(svc, _catalog(svc).get(topic)))

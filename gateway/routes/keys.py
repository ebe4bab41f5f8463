"""Key management for field-level encryption: list, rotate and shred DEKs, rotate KEKs.

The composition root builds :class:`exchange.crypto.FieldCrypto` (KMS provider from settings)
for the publish and delivery paths. An admin manages every
topic's keys; a steward only those its department owns, and others' look absent (404).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from exchange.crypto import FieldCrypto, KeyInfo
from exchange.crypto.errors import KekNotFound
from exchange.errors import Forbidden, InvalidInput, NotFound
from exchange.identity.tokens import Principal
from gateway.access import access
from gateway.auth import require, services
from gateway.container import Services

router = APIRouter(tags=["keys"])
manager = require("admin", "steward")


class KeyOut(BaseModel):
    dek_id: str
    topic: str
    field: str
    owner: str
    version: int
    cipher: str
    state: str = Field(description="active | retired | shredded")
    kek: str
    created_at: datetime
    shredded_at: datetime | None


class RotateIn(BaseModel):
    topic: str
    field: str | None = Field(default=None, description="One field path; default all")


class ShredIn(BaseModel):
    topic: str
    field: str | None = None
    before: datetime | None = Field(
        default=None, description="Only versions created before this instant (ISO 8601)"
    )


class ShredOut(BaseModel):
    topic: str
    shredded: int


class KekRotateOut(BaseModel):
    department: str
    rewrapped: int


def _out(k: KeyInfo) -> KeyOut:
    return KeyOut(**vars(k))


def _crypto(svc: Services) -> FieldCrypto:
    crypto: FieldCrypto = svc.crypto
    return crypto


def _visible(who: Principal, keys: list[KeyInfo]) -> list[KeyInfo]:
    return keys if who.has("admin") else [k for k in keys if k.owner == who.department]


def _check_topic(svc: Services, who: Principal, topic: str, field: str | None = None) -> None:
    """The topic (and field) must have keys the caller manages; otherwise it looks absent."""
    keys = _visible(who, _crypto(svc).keys.list_keys(topic))
    if not keys:
        raise NotFound(f"no keys for topic {topic}")
    if field is not None and not any(k.field == field for k in keys):
        raise NotFound(f"topic {topic} has no keys for field {field}")


@router.get("/v1/keys", response_model=list[KeyOut])
@access("admin", "steward")
async def list_keys(
    topic: str | None = Query(default=None),
    who: Principal = Depends(manager),
    svc: Services = Depends(services),
) -> list[KeyOut]:
    keys = await run_in_threadpool(_crypto(svc).keys.list_keys, topic)
    return [_out(k) for k in _visible(who, keys)]


@router.post("/v1/keys/rotate", response_model=list[KeyOut])
@access("admin", "own:steward")
async def rotate(
    body: RotateIn, who: Principal = Depends(manager), svc: Services = Depends(services)
) -> list[KeyOut]:
    def run() -> list[KeyInfo]:
        _check_topic(svc, who, body.topic, body.field)
        return _crypto(svc).keys.rotate(body.topic, body.field, actor=who.client_id)

    return [_out(k) for k in await run_in_threadpool(run)]


@router.post("/v1/keys/shred", response_model=ShredOut)
@access("admin", "own:steward")
async def shred(
    body: ShredIn, who: Principal = Depends(manager), svc: Services = Depends(services)
) -> ShredOut:
    if body.before is not None and body.before.tzinfo is None:
        raise InvalidInput("before must carry a time zone (e.g. 2026-01-01T00:00:00Z)")

    def run() -> int:
        _check_topic(svc, who, body.topic, body.field)
        return _crypto(svc).keys.shred(body.topic, body.field, body.before, actor=who.client_id)

    return ShredOut(topic=body.topic, shredded=await run_in_threadpool(run))


@router.post("/v1/kms/keks/{department}/rotate", response_model=KekRotateOut)
@access("admin", "own:steward")
async def rotate_kek(
    department: str, who: Principal = Depends(manager), svc: Services = Depends(services)
) -> KekRotateOut:
    if not who.has("admin") and who.department != department:
        raise Forbidden(f"may not rotate the KEK of {department}")
    keys = _crypto(svc).keys

    def run() -> int:
        svc.identity.get_department(department)  # unknown: 404
        try:
            return keys.rotate_kek(department, actor=who.client_id)
        except KekNotFound:
            if any(k.owner == department for k in keys.list_keys()):
                raise  # its keys refer to a KEK the KMS lacks: the server's fault (503)
            raise NotFound(
                f"department {department} has no KEK yet (made with its first sealed field)"
            ) from None

    return KekRotateOut(department=department, rewrapped=await run_in_threadpool(run))


@router.get("/v1/kms/metrics")
@access("admin")
async def kms_metrics(
    _: Principal = Depends(require("admin")), svc: Services = Depends(services)
) -> dict[str, dict[str, float]]:
    """Counts and seconds per KMS operation (no key material)."""
    return _crypto(svc).metrics.snapshot()

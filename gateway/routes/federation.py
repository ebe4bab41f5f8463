"""Site-to-site routes: the owner releases data keys; the remote site serves mirrored topics.

``POST /v1/federation/keys`` (owner site): called by a remote site's gateway over the site
link, as the owner-side client of one remote department (authenticated with the remote site's
identity key, ``private_key_jwt``). ``GET /v1/federation/topics/{topic}/records`` (remote
site): a subscriber of ours reads a topic mirrored from its owner site, with the sealed fields
the owner's agreement grants it (see :mod:`dataplane.federation`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dataplane.federation import MAX_KEYS
from exchange.errors import NotFound
from exchange.identity.tokens import Principal
from gateway.access import access
from gateway.auth import require, services
from gateway.container import FederationServices, Services

router = APIRouter(tags=["federation"])
subscriber = require("subscriber")


class KeyRef(BaseModel):
    dek_id: str = Field(min_length=1, max_length=64)
    version: int = Field(ge=0, le=2**32 - 1)


class KeysIn(BaseModel):
    topic: str = Field(min_length=1, max_length=249)
    keys: list[KeyRef] = Field(max_length=MAX_KEYS)


def _federated(svc: Services = Depends(services)) -> FederationServices:
    if svc.federation is None:
        raise NotFound("this gateway takes no part in federation")
    return svc.federation


@router.post("/v1/federation/keys")
@access("subscriber")
async def release_keys(
    body: KeysIn,
    who: Principal = Depends(subscriber),
    fed: FederationServices = Depends(_federated),
) -> dict[str, Any]:
    """The data keys of a shared topic's envelopes that our agreement with the caller's
    department grants (called by a remote site's gateway)."""
    wanted = [(k.dek_id, k.version) for k in body.keys]
    return await run_in_threadpool(
        lambda: fed.release.release(
            client_id=who.client_id, department=who.department, topic=body.topic, wanted=wanted
        )
    )


@router.get("/v1/federation/topics/{topic}/records")
@access("subscriber")
async def read_mirrored(
    topic: str,
    partition: int = Query(default=0, ge=0, le=100_000),
    offset: int = Query(default=0, ge=0),
    limit: int = Query(default=100, ge=1, le=500),
    who: Principal = Depends(subscriber),
    fed: FederationServices = Depends(_federated),
) -> dict[str, Any]:
    """Records of a topic mirrored from its owner site: unsealed fields, plus the sealed ones
    the owner releases to our department; the others named in ``withheld`` with a reason."""
    return await run_in_threadpool(
        lambda: fed.reader.read(
            client_id=who.client_id,
            department=who.department,
            topic=topic,
            partition=partition,
            offset=offset,
            limit=limit,
        )
    )

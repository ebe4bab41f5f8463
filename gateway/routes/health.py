"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from exchange.db import ping
from gateway.access import PUBLIC, access
from gateway.auth import services
from gateway.container import Services

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
@access(PUBLIC)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Every dependency answers: Kafka, the control-plane database")
@access(PUBLIC)
async def readyz(svc: Services = Depends(services)) -> JSONResponse:
    if svc.health is not None:  # the background prober's latest answers: never waits
        deps = svc.health.status()
    else:
        deps = {
            "kafka": "up" if await run_in_threadpool(svc.kafka.ping) else "down",
            "database": "up" if await run_in_threadpool(ping, svc.engine) else "down",
        }
    ready = all(v == "up" for v in deps.values())
    body = {"status": "ready" if ready else "not_ready", **deps}
    return JSONResponse(body, status_code=200 if ready else 503)

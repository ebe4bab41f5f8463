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


@router.get("/readyz", summary="Kafka and the control-plane database answer")
@access(PUBLIC)
async def readyz(svc: Services = Depends(services)) -> JSONResponse:
    kafka_ok = await run_in_threadpool(svc.kafka.ping)
    db_ok = await run_in_threadpool(ping, svc.engine)
    body = {
        "status": "ready" if kafka_ok and db_ok else "not_ready",
        "kafka": "up" if kafka_ok else "down",
        "database": "up" if db_ok else "down",
    }
    return JSONResponse(body, status_code=200 if kafka_ok and db_ok else 503)

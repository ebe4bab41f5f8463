"""The FastAPI application: mount the routers over services built by
:func:`gateway.bootstrap.build_services`, and run their background work for the app's life."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway import errors
from gateway.bootstrap import build_services
from gateway.container import Services
from gateway.routes import (
    agreements,
    audit,
    catalog,
    consents,
    health,
    identity,
    keys,
    oauth,
    registry,
    subscriptions,
    topics,
)

ROUTERS = (
    health.router,
    oauth.router,
    identity.router,
    registry.router,
    catalog.router,
    agreements.router,
    consents.router,
    keys.router,
    topics.router,
    subscriptions.router,
    audit.router,
)


def create_app(svc: Services) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for start in svc.background.starts:
            await start()
        yield
        for stop in svc.background.stops:
            await stop()

    app = FastAPI(
        title="exchange gateway",
        version="0.1.0",
        description="Cross-department data exchange: publish Avro records to Kafka, subscribe "
        "under sharing agreements, with field-level encryption and a "
        "tamper-evident audit log.",
        lifespan=lifespan,
    )
    app.state.services = svc
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    return app


__all__ = ["build_services", "create_app"]

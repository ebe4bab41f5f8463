"""The FastAPI application: mount the routers over services built by
:func:`gateway.bootstrap.build_services`, and run their background work for the app's life."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Scope

from exchange import logs
from gateway import console, docs, errors
from gateway.bootstrap import build_services
from gateway.container import Services
from gateway.limits import RequestLimits
from gateway.observe import Observe
from gateway.problems import API_ERRORS, OAUTH_ERRORS, REGISTRY_ERRORS
from gateway.publish_fast import PublishFastPath
from gateway.routes import (
    agreements,
    audit,
    catalog,
    consents,
    federation,
    health,
    identity,
    keys,
    oauth,
    people,
    registry,
    subscriptions,
    topics,
    witness,
)

# Matched in this order, route by route: the publish route first, since it takes most of the
# requests (a small publish behind 81 other routes spent ~10 % of its CPU matching them).
# No other router's paths overlap /v1/topics.
ROUTERS = (
    topics.router,
    health.router,
    oauth.router,
    identity.router,
    people.router,
    registry.router,
    catalog.router,
    agreements.router,
    consents.router,
    keys.router,
    subscriptions.router,
    audit.router,
    federation.router,
    witness.router,
)
_PUBLISH = re.compile(r"^/v1/topics/[^/]+/records/?$")


def is_publish(scope: Scope) -> bool:
    """The one route with a large body of its own (EXCHANGE_MAX_BODY_BYTES)."""
    return scope.get("method") == "POST" and bool(_PUBLISH.match(scope.get("path", "")))


def refusal(scope: Scope, exc: Exception) -> Response:
    """A refusal made before routing, in the format of the route it was meant for."""
    if str(scope.get("path", "")).startswith(registry.router.prefix):
        return registry.error_for(exc)
    return errors.response_for(exc)


# How each router answers errors, as its OpenAPI operations declare it (gateway/problems.py).
_ERRORS = {
    id(oauth.router): OAUTH_ERRORS,
    id(registry.router): REGISTRY_ERRORS,
    id(health.router): {},
}


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
        docs_url=None,  # gateway.docs serves its own, with local assets
        redoc_url=None,
    )
    logs.install()  # before anything can log a request's data inside a traceback
    app.state.services = svc
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router, responses=_ERRORS.get(id(router), API_ERRORS))
    console.install(app)
    docs.install(app)
    if svc.settings.publish_fast_path:  # innermost: inside the limits and the observation
        app.add_middleware(PublishFastPath, svc=svc, route=publish_route())
    app.add_middleware(
        RequestLimits,
        max_bytes=svc.settings.max_request_bytes,
        bulk_max_bytes=svc.settings.max_body_bytes,
        is_bulk=is_publish,
        refuse=refusal,
    )
    app.add_middleware(Observe)  # outermost: request id, access log and metrics for all
    return app


def publish_route() -> BaseRoute:
    """The publish route's declaration, which the fast path serves."""
    return next(r for r in topics.router.routes if getattr(r, "endpoint", None) is topics.publish)


__all__ = ["build_services", "create_app"]

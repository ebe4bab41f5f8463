"""Composition root of the gateway: build services, mount routers, manage their lifetime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from audit.factory import open_log
from exchange.auditing import AuditSink, MemoryAuditSink
from exchange.db import make_engine, migrate, session_factory
from exchange.identity.external import external_verifier
from exchange.identity.service import IdentityService
from exchange.identity.tokens import TokenService
from exchange.kafka.client import KafkaAdapter
from exchange.secrets_store import load_master_key
from exchange.settings import Settings
from gateway import dataplane, errors
from gateway.container import Services
from gateway.routes import audit as audit_routes
from gateway.routes import catalog, health, identity, keys, oauth, registry

log = logging.getLogger(__name__)

# Packages plug in here, in order: each gets the Services at start-up (and may publish its own
# service objects in ``svc.extras``), returns routers to mount and an optional close callback.
Plugin = Callable[[Services], tuple[list[Any], Callable[[], None] | None]]
PLUGINS: list[Plugin] = [
    registry.plugin,
    catalog.plugin,  # consent package: catalog, agreements, consents (svc.extras)
    keys.plugin,  # exchange.crypto: FieldCrypto in svc.extras["crypto"], key admin routes
    dataplane.plugin,  # topics, publishing, subscriptions, delivery (looks others up lazily)
    audit_routes.plugin,  # audit package: officer review, proofs, checkpoint ticker
]


def build_services(settings: Settings, bootstrap: str, audit: AuditSink | None = None) -> Services:
    settings.resolved_home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    sessions = session_factory(engine)
    master_key = load_master_key(settings)
    tokens = TokenService(
        sessions,
        master_key,
        issuer=settings.gateway_url,
        audience=settings.token_audience,
        ttl_seconds=settings.token_ttl_seconds,
        leeway_seconds=settings.token_leeway_seconds,
    )
    tokens.ensure_signing_key()
    svc = Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        kafka=KafkaAdapter(bootstrap, client_id=f"exchange-gw-{settings.port}"),
        identity=IdentityService(sessions),
        tokens=tokens,
        master_key=master_key,
        audit=audit or MemoryAuditSink(),
    )
    if audit is None:  # the tamper-evident log (audit package); tests may inject a fake
        svc.audit = open_log(settings, sessions, svc.kafka)
    svc.extras["external_verifier"] = external_verifier(
        settings.oidc_issuer,
        settings.oidc_audience,
        settings.oidc_department_claim,
        svc.identity.department_exists,
        allow_http=settings.oidc_allow_http,
    )
    return svc


def create_app(svc: Services) -> FastAPI:
    closers: list[Callable[[], None]] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Plugins that run background work on the event loop register async hooks here.
        for start in svc.extras.get("on_startup", []):
            await start()
        yield
        for stop in reversed(svc.extras.get("on_shutdown", [])):
            await stop()
        for close in reversed(closers):
            close()
        svc.kafka.close()
        svc.engine.dispose()

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
    for router in (health.router, oauth.router, identity.router):
        app.include_router(router)
    for plugin in PLUGINS:
        routers, close = plugin(svc)
        for r in routers:
            app.include_router(r)
        if close is not None:
            closers.append(close)
    return app

"""The composition root: build every service once, in dependency order, from the settings.

Tests pass fakes for what they must control (the audit sink, the KMS); everything else is
the real thing. Background work is described in ``Services.background`` and run by the
app's lifespan (:func:`gateway.app.create_app`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from audit.cosigning import WitnessScheduler
from audit.factory import attach_service, open_log
from audit.service import Checkpointer
from audit.store import AuditLog
from consent.agreements import Agreements
from consent.catalog import Catalog
from consent.consents import Consents
from consent.domain import CatalogEntry
from consent.managers import ConsentManagers
from consent.overdue import OverdueFlagger
from consent.settings import ConsentSettings
from consent.signing import ConsentSigner
from dataplane.delivery import Deliverer
from dataplane.egress import EgressPolicy
from dataplane.fanout import GroupRegistry
from dataplane.federation import KeyRelease, RemoteReader, RemoteSources
from dataplane.group_commit import GroupCommitter
from dataplane.hub import HubRegistry
from dataplane.idempotency import IdempotencyStore
from dataplane.loop import DeliveryLoop
from dataplane.outcome import KafkaOutcomes
from dataplane.publish import Publisher
from dataplane.readers import ReaderPool
from dataplane.replica import ReplicatedState, StatePublisher
from dataplane.store import SubscriptionStore
from dataplane.webhooks import WebhookDispatcher
from exchange.auditing import AuditSink
from exchange.crypto.factory import build_field_crypto
from exchange.crypto.kms import Kms
from exchange.db import make_engine, migrate, session_factory
from exchange.federation.link import SiteLinks
from exchange.federation.sites import Federation
from exchange.health import HealthMonitor, database_writable
from exchange.home import secure_home
from exchange.identity.authcodes import AuthCodes
from exchange.identity.external import external_verifier
from exchange.identity.people import People
from exchange.identity.service import IdentityService
from exchange.identity.sessions import ConsoleSessions
from exchange.identity.throttle import FailureThrottle
from exchange.identity.tokens import TokenService
from exchange.kafka import open_kafka
from exchange.kafka.transactional import Fencer, claim_slot
from exchange.keyage import KeyAgeReporter
from exchange.secrets_store import load_master_key
from exchange.settings import Settings
from gateway.container import Background, FederationServices, Services
from gateway.ratelimit import RateLimiter
from gateway.streams import StreamSlots
from schemas.registry import SchemaRegistry

log = logging.getLogger(__name__)


def build_services(
    settings: Settings,
    bootstrap: str,
    *,
    audit: AuditSink | None = None,
    kms: Kms | None = None,
    broker_status: Callable[[], str] | None = None,
) -> Services:
    """Every service of one gateway process. ``audit``/``kms``: fakes a test controls;
    ``broker_status``: the supervised embedded broker's state, shown by ``/readyz``."""
    secure_home(settings.resolved_home)  # before the databases and keys are created
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    sessions = session_factory(engine)
    master_key = load_master_key(settings)
    prefix = settings.transactional_prefix()
    slot_lock = claim_slot(settings.resolved_home, prefix)  # two gateways never share ids
    kafka = open_kafka(
        bootstrap,
        f"exchange-gw-{settings.port}",
        settings.kafka_client,
        security=settings.kafka_security(),
        transactional_prefix=prefix,
        transaction_timeout_ms=settings.kafka_transaction_timeout_ms,
    )
    fencer = Fencer(kafka.fence_transactions)
    identity = IdentityService(sessions)
    tokens = TokenService(
        sessions,
        master_key,
        issuer=settings.gateway_url,
        audience=settings.token_audience,
        ttl_seconds=settings.token_ttl_seconds,
        leeway_seconds=settings.token_leeway_seconds,
    )
    tokens.ensure_signing_key()
    sink = audit if audit is not None else open_log(settings, sessions, kafka)
    review = attach_service(settings, sessions, sink, kafka)

    registry = SchemaRegistry(sessions, sink)
    consent_settings = ConsentSettings()
    catalog = Catalog(sessions, sink)

    def lookup(entry: CatalogEntry) -> Sequence[Any] | None:
        return registry.latest_fields(entry.value_subject)

    agreements = Agreements(
        sessions,
        sink,
        catalog,
        response_working_days=consent_settings.agreement_response_working_days,
        holidays=frozenset(consent_settings.holidays),
        field_lookup=lookup,
    )
    consents = Consents(
        sessions,
        sink,
        catalog,
        ConsentSigner(master_key, settings.gateway_url),
        field_lookup=lookup,
    )
    if upgraded := consents.upgrade_artefacts():  # needs the master key: not a migration
        log.info("re-signed %d consent artefacts of an older format", upgraded)
    crypto = build_field_crypto(settings, sessions, sink, master_key, kms=kms)

    # Probed in the background: /readyz answers at once, publishes fail fast while down.
    health = HealthMonitor(
        {
            "kafka": kafka.ping,
            "database": lambda: database_writable(engine),
            "kms": crypto.keys.kms.ping,  # the provider itself: a cache would hide it
        },
        reported={"broker": broker_status} if broker_status is not None else None,
    )
    idempotency = IdempotencyStore(
        sessions,
        outcomes=KafkaOutcomes(kafka),
        resolve_after_s=settings.idempotency_resolve_after_s,
    )
    publisher = Publisher(
        schemas=registry,
        catalog=catalog,
        sealer=crypto,
        committer=GroupCommitter(kafka, sink, lanes=settings.publish_lanes, staging=idempotency),
        idempotency=idempotency,
        kafka_down=lambda: health.down("kafka"),
    )
    subscriptions = SubscriptionStore(sessions)
    sites = Federation(settings.resolved_home)
    links = SiteLinks(sites)
    replica = ReplicatedState(fed=sites, kafka=kafka)
    deliverer = Deliverer(
        catalog=catalog,
        grants=agreements,
        consents=consents,
        schemas=registry,
        sealer=crypto,
        audit=sink,
        remote=RemoteSources(state=replica, owner_of=sites.owner_of, link_for=links),
    )
    replica.on_change(deliverer.forget)  # a replicated revocation bites at once
    state_publisher = StatePublisher(
        fed=sites,
        kafka=kafka,
        catalog=catalog,
        schemas=registry,
        agreements=agreements,
        departments_of_site=identity.departments_with_key,
    )
    agreements.on_change(state_publisher.changed)
    readers = ReaderPool(kafka)
    hubs = HubRegistry(kafka)
    delivery = DeliveryLoop(deliverer, readers)
    webhooks = WebhookDispatcher(
        store=subscriptions,
        loop=delivery,
        master_key=master_key,
        retry_base_s=settings.webhook_retry_base_s,
        policy=EgressPolicy.from_settings(
            allow_loopback=settings.webhook_allow_loopback,
            allowed_networks=settings.webhook_allowed_networks,
            allowed_hosts=settings.webhook_allowed_hosts,
        ),
    )
    key_ages = KeyAgeReporter(
        sessions,
        crypto.keys.policy.max_age,
        certificates={
            use: path
            for use, path in (
                ("kafka_ca", settings.kafka_ssl_cafile),
                ("kafka_client", settings.kafka_ssl_certfile),
            )
            if path is not None
        },
    )
    overdue = OverdueFlagger(agreements, consent_settings.agreement_overdue_check_seconds)
    checkpointer = Checkpointer(review.service, review.settings.checkpoint_interval_s)
    witnessing = WitnessScheduler(
        review.service, Federation(settings.resolved_home), sink, settings.witness_interval_s
    )

    background = Background(
        starts=(
            _in_thread(fencer.start),
            _in_thread(health.start),
            _in_thread(key_ages.start),
            _in_thread(overdue.start),
            _in_thread(checkpointer.start),
            _in_thread(witnessing.start),
            _in_thread(state_publisher.start),
            _in_thread(replica.start),
            webhooks.start,
        ),
        stops=(
            # reverse order of what they depend on: stop feeding work before closing clients
            webhooks.stop,
            _in_thread(witnessing.stop),
            _in_thread(replica.stop),
            _in_thread(state_publisher.stop),
            _in_thread(links.close),
            _in_thread(checkpointer.stop),
            _in_thread(overdue.stop),
            _in_thread(key_ages.stop),
            _in_thread(crypto.close),
            _in_thread(hubs.close),
            _in_thread(readers.close),
            _in_thread(sink.bus.close if isinstance(sink, AuditLog) else lambda: None),
            _in_thread(fencer.stop),
            _in_thread(kafka.close),
            _in_thread(slot_lock.close),
            _in_thread(engine.dispose),
            _in_thread(health.stop),
        ),
    )
    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        kafka=kafka,
        master_key=master_key,
        identity=identity,
        tokens=tokens,
        external=external_verifier(
            settings.oidc_issuer,
            settings.oidc_audience,
            settings.oidc_department_claim,
            identity.department_exists,
            allow_http=settings.oidc_allow_http,
            leeway_seconds=settings.token_leeway_seconds,  # one clock-skew bound for both
        ),
        rate_limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        failure_throttle=FailureThrottle(),
        people=People(sessions, master_key),
        console_sessions=ConsoleSessions(
            sessions,
            idle_s=settings.console_idle_seconds,
            absolute_s=settings.console_session_seconds,
        ),
        auth_codes=AuthCodes(sessions),
        audit=sink,
        audit_review=review.service,
        registry=registry,
        catalog=catalog,
        agreements=agreements,
        consents=consents,
        consent_managers=ConsentManagers(sessions, sink),
        crypto=crypto,
        publisher=publisher,
        subscriptions=subscriptions,
        deliverer=deliverer,
        readers=readers,
        hubs=hubs,
        groups=GroupRegistry(hubs, deliverer),
        delivery=delivery,
        webhooks=webhooks,
        streams=StreamSlots(settings.sse_streams_per_client),
        background=background,
        health=health,
        federation=FederationServices(
            sites=sites,
            links=links,
            replica=replica,
            release=KeyRelease(
                shared=sites.shared_out, grants=agreements, keys=crypto.keys, audit=sink
            ),
            reader=RemoteReader(kafka=kafka, owner_of=sites.owner_of, deliverer=deliverer),
        ),
    )


def _in_thread(fn: Callable[[], Any]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        await asyncio.to_thread(fn)

    return run

"""The composition root's product: every service the routes use, built once per process.

Typed and frozen: routes read ``svc.catalog``, ``svc.publisher`` ... and nothing can swap a
service behind another's back; tests that need a fake pass it to
:func:`gateway.bootstrap.build_services` instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from audit.service import AuditService
from consent.agreements import Agreements
from consent.catalog import Catalog
from consent.consents import Consents
from consent.managers import ConsentManagers
from dataplane.delivery import Deliverer
from dataplane.fanout import GroupRegistry
from dataplane.federation import KeyRelease, RemoteReader
from dataplane.hub import HubRegistry
from dataplane.loop import DeliveryLoop
from dataplane.publish import Publisher
from dataplane.readers import ReaderPool
from dataplane.replica import ReplicatedState
from dataplane.store import SubscriptionStore
from dataplane.webhooks import WebhookDispatcher
from exchange.auditing import AuditSink
from exchange.crypto.fields import FieldCrypto
from exchange.federation.link import SiteLinks
from exchange.federation.sites import Federation
from exchange.health import HealthMonitor
from exchange.identity.authcodes import AuthCodes
from exchange.identity.external import ExternalVerifier
from exchange.identity.people import People
from exchange.identity.service import IdentityService
from exchange.identity.sessions import ConsoleSessions
from exchange.identity.throttle import FailureThrottle
from exchange.identity.tokens import TokenService
from exchange.kafka.port import KafkaPort
from exchange.settings import Settings
from gateway.ratelimit import RateLimiter
from gateway.streams import StreamSlots
from schemas.registry import SchemaRegistry


@dataclass(frozen=True)
class Background:
    """Work that runs beside the requests: started and stopped by the app's lifespan,
    stopped in reverse order."""

    starts: tuple[Callable[[], Awaitable[None]], ...] = ()
    stops: tuple[Callable[[], Awaitable[None]], ...] = ()


@dataclass(frozen=True)
class FederationServices:
    """This site among others: its files, its links to owner sites, the owners' replicated
    state (remote role), key release and the paged remote read."""

    sites: Federation
    links: SiteLinks
    replica: ReplicatedState
    release: KeyRelease
    reader: RemoteReader


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    kafka: KafkaPort
    master_key: bytes
    # identity
    identity: IdentityService
    tokens: TokenService
    external: ExternalVerifier | None
    rate_limiter: RateLimiter
    failure_throttle: FailureThrottle  # failed client and person authentications
    people: People  # staff who sign in to the console
    console_sessions: ConsoleSessions
    auth_codes: AuthCodes  # authorization-code grant (PKCE) for first-party public clients
    # the tamper-evident log: every package appends; officers review through audit_review
    audit: AuditSink
    audit_review: AuditService
    # domain
    registry: SchemaRegistry
    catalog: Catalog
    agreements: Agreements
    consents: Consents
    consent_managers: ConsentManagers
    crypto: FieldCrypto
    # data plane
    publisher: Publisher
    subscriptions: SubscriptionStore
    deliverer: Deliverer
    readers: ReaderPool
    hubs: HubRegistry
    groups: GroupRegistry
    delivery: DeliveryLoop
    webhooks: WebhookDispatcher
    streams: StreamSlots  # per-client cap on concurrent SSE streams
    background: Background = field(default_factory=Background)
    health: HealthMonitor | None = None  # dependency status, probed in the background
    federation: FederationServices | None = None

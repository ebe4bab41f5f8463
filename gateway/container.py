"""The composition root's product: every service the routes use, built once per process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from exchange.auditing import AuditSink
from exchange.identity.service import IdentityService
from exchange.identity.tokens import TokenService
from exchange.kafka.client import KafkaAdapter
from exchange.settings import Settings


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    kafka: KafkaAdapter
    identity: IdentityService
    tokens: TokenService
    master_key: bytes
    audit: AuditSink
    # Filled in by the packages that own them (registry, crypto, consent, audit, delivery).
    extras: dict[str, Any] = field(default_factory=dict)

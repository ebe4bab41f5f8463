"""Build the audit log and its service from settings: the one place that wires real adapters."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from audit.keys import SubjectHasher, load_hmac_key, load_signer
from audit.merkle import hasher
from audit.service import AuditService
from audit.settings import AuditSettings
from audit.store import AuditLog, EventBus, ensure_head
from exchange.kafka.client import KafkaAdapter
from exchange.settings import Settings

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Audit:
    log: AuditLog
    service: AuditService
    settings: AuditSettings


def open_audit(
    settings: Settings,
    sessions: sessionmaker[Session],
    kafka: KafkaAdapter | None,
    audit_settings: AuditSettings | None = None,
) -> Audit:
    """The audit log over the migrated database; ``kafka=None`` gives an index-only log."""
    a = audit_settings or AuditSettings()
    home = settings.resolved_home
    h = hasher(a.hash)
    if kafka is not None:
        kafka.ensure_topic(a.topic, 1, retention_ms=a.retention_days * DAY_MS)
    ensure_head(sessions, h)
    log = AuditLog(sessions, EventBus(kafka, a.topic), h, SubjectHasher(load_hmac_key(home, a)))
    service = AuditService(sessions, log, load_signer(home, a), a, kafka)
    return Audit(log, service, a)

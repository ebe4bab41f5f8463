"""Build the audit log and its service from settings: the one place that wires real adapters."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from audit.database import audit_sessions
from audit.keys import SubjectHasher, load_hmac_key, load_signer
from audit.merkle import hasher
from audit.service import AuditService
from audit.settings import AuditSettings, checkpoint_topic
from audit.store import AuditLog, EventBus, ensure_head
from exchange.auditing import AuditRecord, AuditSink
from exchange.kafka.port import KafkaPort
from exchange.settings import Settings

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Audit:
    log: AuditLog
    service: AuditService
    settings: AuditSettings


def open_log(
    settings: Settings,
    sessions: sessionmaker[Session],
    kafka: KafkaPort | None,
    audit_settings: AuditSettings | None = None,
    *,
    announce: bool = True,
) -> AuditLog:
    """The sink over the migrated database; ``kafka=None`` gives an index-only log (tools)."""
    a = audit_settings or AuditSettings()
    h = hasher(a.hash)
    sessions = audit_sessions(settings, sessions)
    if kafka is not None:
        kafka.ensure_topic(a.topic, 1, retention_ms=a.retention_days * DAY_MS)
        kafka.ensure_topic(checkpoint_topic(a.topic), 1, retention_ms=-1)  # kept for good
    bus = EventBus(kafka, a.topic)
    bus.log_id = ensure_head(sessions, h)
    key = load_hmac_key(settings.resolved_home, a)
    log = AuditLog(sessions, bus, h, SubjectHasher(key))
    if kafka is not None:
        # Either way the index first adopts what Kafka holds beyond it (a machine crash may
        # have lost its last commits: audit.store), before anyone queries it.
        if announce:  # records the start, and warms the producer for the first request
            log.append(AuditRecord("system.started", actor="system", data={"log": bus.log_id}))
        else:
            log.catch_up()
    return log


def attach_service(
    settings: Settings,
    sessions: sessionmaker[Session],
    sink: AuditSink,
    kafka: KafkaPort | None,
    audit_settings: AuditSettings | None = None,
) -> Audit:
    """The officer's service over ``sink`` (an index-only log if a test injected a fake)."""
    a = audit_settings or AuditSettings()
    log = sink if isinstance(sink, AuditLog) else open_log(settings, sessions, None, a)
    signer = load_signer(settings.resolved_home, a)
    return Audit(log, AuditService(log.sessions, log, signer, a, kafka), a)


def open_audit(
    settings: Settings,
    sessions: sessionmaker[Session],
    kafka: KafkaPort | None,
    audit_settings: AuditSettings | None = None,
    *,
    announce: bool = True,
) -> Audit:
    log = open_log(settings, sessions, kafka, audit_settings, announce=announce)
    return attach_service(settings, sessions, log, kafka, audit_settings)

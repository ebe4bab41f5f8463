"""The catalog: one entry per topic (owner, description, share type, value schema subject)."""

from __future__ import annotations

import re
import threading

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from consent.domain import CIPHERS, SHARE_TYPES, CatalogEntry
from consent.errors import CatalogEntryExists, TopicNotInCatalog
from consent.models import CatalogRow
from exchange.auditing import AuditRecord, AuditSink
from exchange.db import transaction
from exchange.errors import InvalidInput
from exchange.identity.models import DepartmentRow

__all__ = ["Catalog", "CatalogEntry", "validate_entry"]

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def validate_entry(entry: CatalogEntry) -> None:
    """Raise InvalidInput naming the first problem of ``entry``."""
    if not _TOPIC.match(entry.topic) or entry.topic in (".", ".."):
        raise InvalidInput("topic must be 1-249 characters of A-Z, a-z, 0-9, '.', '_' and '-'")
    if entry.share_type not in SHARE_TYPES:
        raise InvalidInput(f"share_type must be one of {', '.join(SHARE_TYPES)}")
    if entry.cipher not in CIPHERS:
        raise InvalidInput(f"cipher must be one of {', '.join(CIPHERS)}")
    if entry.share_type == "not_shared" and not (entry.legal_basis or "").strip():
        raise InvalidInput("a not_shared topic needs a recorded legal_basis")
    if entry.partitions < 1:
        raise InvalidInput("partitions must be at least 1")
    if not entry.title.strip():
        raise InvalidInput("title must not be empty")


def _entry(r: CatalogRow) -> CatalogEntry:
    return CatalogEntry(
        topic=r.topic,
        owner=r.owner,
        title=r.title,
        description=r.description,
        update_cycle=r.update_cycle,
        share_type=r.share_type,  # type: ignore[arg-type]  # validated on the way in
        value_subject=r.value_subject,
        partitions=r.partitions,
        cipher=r.cipher,
        legal_basis=r.legal_basis,
        created_at=r.created_at,
    )


class Catalog:
    def __init__(self, sessions: sessionmaker[Session], audit: AuditSink) -> None:
        self.sessions = sessions
        self.audit = audit
        # Entries do not change once created, so a read cache is safe (cleared on delete).
        self._cache: dict[str, CatalogEntry] = {}
        self._lock = threading.Lock()

    def create(self, entry: CatalogEntry, *, actor: str = "system") -> CatalogEntry:
        validate_entry(entry)
        with transaction(self.sessions) as s:
            if s.get(DepartmentRow, entry.owner) is None:
                raise InvalidInput(f"owner department {entry.owner} does not exist")
            if s.get(CatalogRow, entry.topic) is not None:
                raise CatalogEntryExists(f"topic {entry.topic} already exists")
            s.add(CatalogRow(**entry.__dict__))
            try:
                s.flush()
            except IntegrityError as exc:  # lost a race with another creator
                raise CatalogEntryExists(f"topic {entry.topic} already exists") from exc
            self.audit.append(
                AuditRecord(
                    "catalog.created",
                    actor=actor,
                    department=entry.owner,
                    topic=entry.topic,
                    data={"share_type": entry.share_type, "value_subject": entry.value_subject},
                )
            )
        return entry

    def get(self, topic: str) -> CatalogEntry:
        with self._lock:
            cached = self._cache.get(topic)
        if cached is not None:
            return cached
        with transaction(self.sessions) as s:
            row = s.get(CatalogRow, topic)
            if row is None:
                raise TopicNotInCatalog(f"topic {topic} not found")
            entry = _entry(row)
        with self._lock:
            self._cache[topic] = entry
        return entry

    def search(
        self, q: str | None = None, dept: str | None = None, share_type: str | None = None
    ) -> list[CatalogEntry]:
        stmt = select(CatalogRow).order_by(CatalogRow.topic)
        if dept:
            stmt = stmt.where(CatalogRow.owner == dept)
        if share_type:
            stmt = stmt.where(CatalogRow.share_type == share_type)
        if q:
            escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            like = f"%{escaped}%"
            cols = (CatalogRow.topic, CatalogRow.title, CatalogRow.description)
            stmt = stmt.where(or_(*(c.ilike(like, escape="\\") for c in cols)))
        with transaction(self.sessions) as s:
            return [_entry(r) for r in s.scalars(stmt)]

    def delete(self, topic: str, *, actor: str = "system") -> None:
        """Remove an entry (rollback of a topic whose Kafka creation failed)."""
        with transaction(self.sessions) as s:
            row = s.get(CatalogRow, topic)
            if row is None:
                raise TopicNotInCatalog(f"topic {topic} not found")
            owner = row.owner
            s.delete(row)
            self.audit.append(
                AuditRecord("catalog.deleted", actor=actor, department=owner, topic=topic)
            )
        with self._lock:
            self._cache.pop(topic, None)

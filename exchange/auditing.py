"""The audit port: what every package hands to the audit log. Implemented in ``audit/``.

An ``AuditSink.append`` returns only once the event is durable; if it cannot be made
durable it raises :class:`exchange.errors.DependencyUnavailable` and the caller must not
acknowledge the action (fail closed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class AuditRecord:
    type: str  # e.g. "token.issued", "record.published", "key.shredded"
    actor: str  # client id, or "system"
    department: str | None = None
    topic: str | None = None
    data: dict[str, Any] = field(default_factory=dict)  # JSON-safe; never sensitive plaintext
    subjects: tuple[str, ...] = ()  # raw data-subject ids: the sink stores keyed hashes only
    outcome: str = "ok"  # ok | denied | error


class AuditSink(Protocol):
    def append(self, record: AuditRecord) -> None: ...

    def append_many(self, records: Sequence[AuditRecord]) -> None: ...


class MemoryAuditSink:
    """Keeps events in a list. For tests and for tools that run without the audit log."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def append(self, record: AuditRecord) -> None:
        self.records.append(record)

    def append_many(self, records: Sequence[AuditRecord]) -> None:
        self.records.extend(records)

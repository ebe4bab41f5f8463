"""Builders of policy inputs shared by the consent unit tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from consent.domain import CatalogEntry, ConsentRef, ConsentStatus, Grant, ShareType

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class F:
    path: str
    classification: str
    data_subject: bool = False


def entry(share_type: ShareType = "conditional", topic: str = "health.visits") -> CatalogEntry:
    return CatalogEntry(
        topic=topic,
        owner="health",
        title="Visits",
        description="",
        update_cycle="daily",
        share_type=share_type,
        value_subject=f"{topic}-value",
        partitions=1,
        cipher="AES256_GCM",
        legal_basis="law" if share_type == "not_shared" else None,
        created_at=NOW - 30 * DAY,
    )


def grant(
    fields: set[str],
    *,
    consumer: str = "police",
    topic: str = "health.visits",
    consent: bool = False,
    start: datetime = NOW - DAY,
    until: datetime = NOW + DAY,
) -> Grant:
    return Grant("agr-1", topic, consumer, frozenset(fields), "p", consent, start, until)


def consent_ref(
    fields: set[str] = frozenset(),  # type: ignore[assignment]
    *,
    consumer: str = "police",
    topic: str = "health.visits",
    status: ConsentStatus = ConsentStatus.ACTIVE,
    start: datetime = NOW - DAY,
    until: datetime = NOW + DAY,
) -> ConsentRef:
    return ConsentRef("cns-1", 1, consumer, topic, "p", frozenset(fields), status, start, until)

"""Value objects of the consent package: no I/O, shared by the services and the policy.

Re-exported where callers look for them: ``consent.catalog.CatalogEntry``,
``consent.agreements.Grant``, ``consent.consents.ConsentRef``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

ShareType = Literal["unconditional", "conditional", "not_shared"]
SHARE_TYPES: tuple[ShareType, ...] = ("unconditional", "conditional", "not_shared")
CIPHERS = ("AES256_GCM", "SM4_GCM")
# Classifications in increasing sensitivity; anything else is treated as "secret".
OPEN_CLASSES = frozenset({"public", "internal"})
CLASSIFICATIONS = ("public", "internal", "sensitive", "secret")


@dataclass(frozen=True)
class CatalogEntry:
    """A topic's record in the control plane."""

    topic: str
    owner: str  # department id
    title: str
    description: str
    update_cycle: str  # e.g. "daily", "real-time"
    share_type: ShareType
    value_subject: str  # registry subject of the value schema
    partitions: int
    cipher: str  # "AES256_GCM" | "SM4_GCM"
    legal_basis: str | None
    created_at: datetime


class AgreementStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    # Not stored: an approved agreement past valid_until reads as expired.
    EXPIRED = "expired"


@dataclass(frozen=True)
class Grant:
    """What an active, approved agreement lets a consumer department read of one topic."""

    agreement_id: str
    topic: str
    consumer: str
    fields: frozenset[str]
    purpose: str
    requires_subject_consent: bool
    valid_from: datetime
    valid_until: datetime

    def valid_at(self, now: datetime) -> bool:
        return self.valid_from <= now < self.valid_until


class ConsentStatus(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    REVOKED = "REVOKED"
    # Not stored: an ACTIVE consent past valid_until reads as EXPIRED.
    EXPIRED = "EXPIRED"


@dataclass(frozen=True)
class ConsentRef:
    """One version of a data subject's consent, as the policy needs it.

    ``fields`` empty means the consent does not narrow the agreement's fields.
    """

    consent_id: str
    version: int
    consumer: str
    topic: str
    purpose: str
    fields: frozenset[str]
    status: ConsentStatus
    valid_from: datetime
    valid_until: datetime

    def active_at(self, now: datetime) -> bool:
        return self.status is ConsentStatus.ACTIVE and self.valid_from <= now < self.valid_until


class NotRequired:
    """Type of :data:`NOT_REQUIRED`: the caller did not look up consent (none is needed)."""

    _instance: NotRequired | None = None

    def __new__(cls) -> NotRequired:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_REQUIRED"


NOT_REQUIRED = NotRequired()

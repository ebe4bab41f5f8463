"""Tables of the catalog, sharing agreements and data-subject consents.

Raw data-subject ids are never stored: consents are found by a keyed hash of the subject
(``subject_index``) and artefacts carry another keyed hash (see ``consent.signing``); both keys
are derived from the master key and never leave the exchange.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from exchange.db import Base, UtcDateTime


class CatalogRow(Base):
    __tablename__ = "catalog_entries"
    topic: Mapped[str] = mapped_column(String(249), primary_key=True)
    owner: Mapped[str] = mapped_column(ForeignKey("departments.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    update_cycle: Mapped[str] = mapped_column(String(64))
    share_type: Mapped[str] = mapped_column(String(16), index=True)
    value_subject: Mapped[str] = mapped_column(String(300))
    partitions: Mapped[int] = mapped_column(Integer)
    cipher: Mapped[str] = mapped_column(String(16))
    legal_basis: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AgreementRow(Base):
    __tablename__ = "agreements"
    __table_args__ = (Index("ix_agreements_consumer_topic", "consumer", "topic", "status"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    topic: Mapped[str] = mapped_column(String(249), index=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    consumer: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(64))
    fields: Mapped[list[str]] = mapped_column(JSON)  # as requested
    granted_fields: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    purpose: Mapped[str] = mapped_column(Text)
    legal_basis: Mapped[str | None] = mapped_column(Text, nullable=True)
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime())
    valid_until: Mapped[datetime] = mapped_column(UtcDateTime())
    requires_subject_consent: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime())
    respond_by: Mapped[datetime] = mapped_column(UtcDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Set when the admin was told the request is overdue (so it is told once).
    overdue_flagged_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ConsentRow(Base):
    """The current version of a consent (the one the policy reads)."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_lookup", "consumer", "topic", "subject_index"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject_index: Mapped[str] = mapped_column(String(64))
    consumer: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(String(249))
    purpose: Mapped[str] = mapped_column(Text)
    fields: Mapped[list[str]] = mapped_column(JSON)
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime())
    valid_until: Mapped[datetime] = mapped_column(UtcDateTime())
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    registrar_department: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ConsentVersionRow(Base):
    """Append-only: every state of every consent, with the artefact signed at that time."""

    __tablename__ = "consent_versions"
    consent_id: Mapped[str] = mapped_column(ForeignKey("consents.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    artefact: Mapped[str] = mapped_column(Text)  # compact JWS
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ConsentManagerRow(Base):
    """An admin's designation: ``manager``'s registrars record consents for ``owner``'s topics."""

    __tablename__ = "consent_managers"
    owner: Mapped[str] = mapped_column(ForeignKey("departments.id"), primary_key=True)
    manager: Mapped[str] = mapped_column(ForeignKey("departments.id"), primary_key=True)
    designated_by: Mapped[str] = mapped_column(String(64))
    designated_at: Mapped[datetime] = mapped_column(UtcDateTime())

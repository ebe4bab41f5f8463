"""Registry tables in the control-plane database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from exchange.db import Base, UtcDateTime


class SchemaRow(Base):
    """One distinct schema; ``id`` is the global schema id (never reused: AUTOINCREMENT).

    ``schema`` is the text as Confluent stores it; ``fingerprint`` hashes it with the pinned
    references (``schemas.canonical.fingerprint``), so two rows never share a text.
    """

    __tablename__ = "registry_schemas"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    schema_type: Mapped[str] = mapped_column(String(16))
    schema: Mapped[str] = mapped_column(Text)
    references: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # Texts of every (transitive) reference as resolved at registration, dependencies first:
    # the id stays readable even after the referenced versions are deleted.
    dependencies: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class VersionRow(Base):
    __tablename__ = "registry_versions"
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    schema_id: Mapped[int] = mapped_column(ForeignKey("registry_schemas.id"), index=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ReferenceRow(Base):
    """Schema ``schema_id`` refers to ``subject`` version ``version`` (blocks its deletion)."""

    __tablename__ = "registry_references"
    schema_id: Mapped[int] = mapped_column(ForeignKey("registry_schemas.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), index=True)
    version: Mapped[int] = mapped_column(Integer)


class SubjectRow(Base):
    """Per-subject settings and the row every writer of that subject locks first.

    The empty name is the global scope. ``seq`` is bumped by each write so that the write
    takes the lock (SQLite: the database write lock; PostgreSQL: the row lock).
    """

    __tablename__ = "registry_subjects"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    compatibility: Mapped[str | None] = mapped_column(String(32), nullable=True)
    mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Confluent's "normalize" config: register and look up schemas in their normalised form.
    normalize: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # Field path -> classification of the last version registered here. Deleting versions does
    # not reset it, so a downgrade cannot sneak in by deleting the subject first.
    classifications: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)

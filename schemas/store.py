"""Database access for the registry: small queries over one Session. No decisions here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from schemas.models import ReferenceRow, SchemaRow, SubjectRow, VersionRow

GLOBAL = ""  # SubjectRow name of the global scope


def now() -> datetime:
    return datetime.now(UTC)


def lock_subject(s: Session, subject: str) -> SubjectRow:
    """First statement of every write: take the subject's lock so writers serialise.

    A write as the first statement makes SQLite take its write lock at once (waiting on
    busy_timeout) instead of failing a read-to-write upgrade; on PostgreSQL it is a row lock.
    """
    dialect = s.get_bind().dialect.name
    ins = pg_insert if dialect == "postgresql" else sqlite_insert
    s.execute(ins(SubjectRow).values(name=subject, seq=0).on_conflict_do_nothing())
    s.execute(update(SubjectRow).where(SubjectRow.name == subject).values(seq=SubjectRow.seq + 1))
    row = s.get(SubjectRow, subject, populate_existing=True)
    assert row is not None
    return row


def versions(s: Session, subject: str, *, deleted: bool = False) -> list[VersionRow]:
    q = select(VersionRow).where(VersionRow.subject == subject)
    if not deleted:
        q = q.where(VersionRow.deleted.is_(False))
    return list(s.scalars(q.order_by(VersionRow.version)))


def one_version(
    s: Session, subject: str, version: int | None, *, deleted: bool = False
) -> VersionRow | None:
    """That version (None: the latest), skipping soft-deleted ones unless ``deleted``."""
    q = select(VersionRow).where(VersionRow.subject == subject)
    if not deleted:
        q = q.where(VersionRow.deleted.is_(False))
    if version is not None:
        q = q.where(VersionRow.version == version)
    return s.scalars(q.order_by(VersionRow.version.desc()).limit(1)).first()


def next_version(s: Session, subject: str) -> int:
    top = s.scalar(select(func.max(VersionRow.version)).where(VersionRow.subject == subject))
    return (top or 0) + 1


def subjects(s: Session, *, deleted: bool = False) -> list[str]:
    q = select(VersionRow.subject).distinct()
    if not deleted:
        q = q.where(VersionRow.deleted.is_(False))
    return sorted(s.scalars(q))


def all_versions(s: Session, prefix: str = "") -> list[VersionRow]:
    """Every version row (deleted ones too) whose subject starts with ``prefix``."""
    q = select(VersionRow)
    if prefix:
        q = q.where(VersionRow.subject.startswith(prefix, autoescape=True))
    return list(s.scalars(q.order_by(VersionRow.subject, VersionRow.version)))


def schemas_by_id(s: Session, ids: set[int]) -> dict[int, SchemaRow]:
    if not ids:
        return {}
    return {r.id: r for r in s.scalars(select(SchemaRow).where(SchemaRow.id.in_(ids)))}


def schema_by_fingerprint(s: Session, fingerprint: str) -> SchemaRow | None:
    return s.scalars(select(SchemaRow).where(SchemaRow.fingerprint == fingerprint)).first()


def add_schema(
    s: Session,
    fingerprint: str,
    text: str,
    references: list[dict[str, Any]],
    dependencies: list[str],
    *,
    schema_id: int | None = None,
) -> SchemaRow:
    """Insert a schema; the database assigns the id unless ``schema_id`` is given (IMPORT)."""
    row = SchemaRow(
        id=schema_id,
        fingerprint=fingerprint,
        schema_type="AVRO",
        schema=text,
        references=references,
        dependencies=dependencies,
        created_at=now(),
    )
    s.add(row)
    s.flush()  # assigns the global id
    if schema_id is not None and s.get_bind().dialect.name == "postgresql":
        # An explicit id does not advance the sequence; move it past the imported ids.
        s.execute(
            sql(
                "SELECT setval(pg_get_serial_sequence('registry_schemas', 'id'), "
                "(SELECT MAX(id) FROM registry_schemas))"
            )
        )
    for ref in references:
        s.add(
            ReferenceRow(
                schema_id=row.id, name=ref["name"], subject=ref["subject"], version=ref["version"]
            )
        )
    return row


def usages(s: Session, schema_id: int, *, deleted: bool = False) -> list[VersionRow]:
    q = select(VersionRow).where(VersionRow.schema_id == schema_id)
    if not deleted:
        q = q.where(VersionRow.deleted.is_(False))
    return list(s.scalars(q.order_by(VersionRow.subject, VersionRow.version)))


def referenced_by(s: Session, subject: str, version: int) -> list[int]:
    """Ids of live schemas that refer to this subject version."""
    q = (
        select(ReferenceRow.schema_id)
        .join(VersionRow, VersionRow.schema_id == ReferenceRow.schema_id)
        .where(ReferenceRow.subject == subject, ReferenceRow.version == version)
        .where(VersionRow.deleted.is_(False))
        .distinct()
    )
    return sorted(s.scalars(q))


def setting(s: Session, subject: str) -> SubjectRow | None:
    return s.get(SubjectRow, subject)

"""State every part of the registry shares: the database, the audit sink, the id cache.

Writers of one subject serialise on that subject's row (``store.lock_subject``); global ids
come from the database's autoincrement, so several gateway processes over one database never
hand out the same id. Schemas by id are immutable and cached in memory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from exchange.auditing import AuditRecord, AuditSink
from exchange.db import transaction
from exchange.errors import DependencyUnavailable
from schemas import store
from schemas.canonical import Parsed, fastavro_schema, parse
from schemas.compatibility import DEFAULT_LEVEL, Level, Prior
from schemas.errors import (
    InvalidSchema,
    OperationNotPermitted,
    SchemaNotFound,
    SubjectNotFound,
    VersionNotFound,
)
from schemas.models import SchemaRow
from schemas.registry.types import (
    MAX_ID,
    Mode,
    SchemaVersion,
    StoredSchema,
    check_subject,
    check_type,
    parse_version,
)

T = TypeVar("T")


@dataclass(frozen=True)
class New:
    """A schema about to be registered: parsed, references pinned to versions, their texts."""

    parsed: Parsed
    refs: list[dict[str, Any]]
    deps: list[str]


class RegistryBase:
    def __init__(self, sessions: sessionmaker[Session], audit: AuditSink) -> None:
        self.sessions = sessions
        self.audit = audit
        self._by_id: dict[int, StoredSchema] = {}
        self._parsed: dict[int, Parsed] = {}
        self._lock = threading.Lock()

    # -- reads every part needs ----------------------------------------------------------
    def version(
        self, subject: str, version: int | str = "latest", *, deleted: bool = False
    ) -> SchemaVersion:
        number = parse_version(version)
        with transaction(self.sessions) as s:
            row = store.one_version(s, subject, number, deleted=deleted)
            if row is None:
                if store.one_version(s, subject, None, deleted=deleted) is None:
                    raise SubjectNotFound(f"Subject '{subject}' not found.")
                raise VersionNotFound(f"Version {version} not found.")
            sch = s.get(SchemaRow, row.schema_id)
            assert sch is not None
            return SchemaVersion(
                subject, row.version, sch.id, sch.schema, sch.references, row.deleted
            )

    def by_id(self, schema_id: int) -> StoredSchema:
        if not 0 < schema_id <= MAX_ID:  # cannot exist; the database would overflow on it
            raise SchemaNotFound(f"Schema {schema_id} not found")
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        with transaction(self.sessions) as s:
            row = s.get(SchemaRow, schema_id)
            if row is None:
                raise SchemaNotFound(f"Schema {schema_id} not found")
            text, refs, deps = row.schema, list(row.references), row.dependencies
        dep_texts = deps if deps is not None else self._reference_texts(refs)
        parsed = parse(text, dep_texts, ref_keys(refs))
        stored = StoredSchema(
            schema_id, text, fastavro_schema(text, dep_texts), parsed.fields, refs
        )
        with self._lock:
            self._parsed.setdefault(schema_id, parsed)
            return self._by_id.setdefault(schema_id, stored)

    def _parsed_by_id(self, schema_id: int) -> Parsed:
        self.by_id(schema_id)
        return self._parsed[schema_id]

    def _priors(self, rows: list[Any]) -> list[Prior]:
        return [
            Prior(r.version, self.by_id(r.schema_id).schema, self._parsed_by_id(r.schema_id).avro)
            for r in rows
        ]

    # -- parsing a request's schema ------------------------------------------------------
    def _parse(
        self,
        subject: str,
        text: str,
        references: list[dict[str, Any]],
        schema_type: str,
        normalize: bool = False,
    ) -> New:
        check_subject(subject)
        check_type(schema_type)
        if not isinstance(text, str) or not text.strip():
            raise InvalidSchema("Empty schema")
        refs = [self._resolve_ref(r) for r in references]
        deps = self._reference_texts(refs)
        return New(parse(text, deps, ref_keys(refs), normalize=normalize), refs, deps)

    def _resolve_ref(self, ref: dict[str, Any]) -> dict[str, Any]:
        try:
            name, subject, version = str(ref["name"]), str(ref["subject"]), ref.get("version", -1)
        except (KeyError, TypeError):
            raise InvalidSchema(
                "Invalid schema: a reference needs name, subject and version"
            ) from None
        try:
            v = self.version(subject, version)
        except (SubjectNotFound, VersionNotFound):
            raise InvalidSchema(
                f"Invalid schema: reference {name} to {subject} version {version} not found"
            ) from None
        return {"name": name, "subject": subject, "version": v.version}

    def _reference_texts(self, refs: list[dict[str, Any]]) -> list[str]:
        """Schema texts of all (transitive) references, dependencies first, each once."""
        out: list[str] = []
        seen: set[int] = set()

        def visit(ref: dict[str, Any]) -> None:
            v = self.version(ref["subject"], ref["version"], deleted=True)
            if v.id in seen:
                return
            seen.add(v.id)
            for inner in v.references:
                visit(inner)
            out.append(v.schema)

        for r in refs:
            visit(r)
        return out

    # -- settings in scope ---------------------------------------------------------------
    def _setting(self, s: Session, subject: str, attr: str) -> Any:
        for scope in (subject, store.GLOBAL):
            row = store.setting(s, scope)
            if row is not None and getattr(row, attr) is not None:
                return getattr(row, attr)
        return None

    def _level(self, s: Session, subject: str) -> Level:
        value = self._setting(s, subject, "compatibility")
        return Level(value) if value else DEFAULT_LEVEL

    def _normalize(self, s: Session, subject: str) -> bool:
        return bool(self._setting(s, subject, "normalize"))

    def _mode(self, s: Session, subject_mode: str | None) -> Mode:
        if subject_mode:
            return Mode(subject_mode)
        glob = store.setting(s, store.GLOBAL)
        return Mode(glob.mode) if glob is not None and glob.mode else Mode.READWRITE

    def _writable(self, s: Session, subject_mode: str | None, subject: str) -> None:
        if self._mode(s, subject_mode) is Mode.READONLY:
            raise OperationNotPermitted(f"Subject {subject} in context . is in read-only mode")

    # -- plumbing ------------------------------------------------------------------------
    def _retrying(self, fn: Callable[[], T]) -> T:
        # Two instances inserting the same new schema (or version) at once: one insert loses
        # on the unique key; run the unit of work again and it finds the winner's row.
        for attempt in range(5):
            try:
                return fn()
            except DependencyUnavailable as exc:
                if not isinstance(exc.__cause__, IntegrityError) or attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _audit(self, kind: str, actor: str, **data: Any) -> None:
        # After commit: the audit sink may use the same database, and must not wait on our lock.
        self.audit.append(AuditRecord(kind, actor=actor, data=data))


def ref_keys(refs: list[dict[str, Any]]) -> list[Any]:
    return [[r["name"], r["subject"], r["version"]] for r in refs]

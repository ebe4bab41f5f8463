"""The schema registry service: Confluent semantics over the control-plane database.

Writers of one subject serialise on that subject's row (``store.lock_subject``); global ids
come from the database's autoincrement, so several gateway processes over one database never
hand out the same id. Schemas by id are immutable and cached in memory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from exchange.auditing import AuditRecord, AuditSink
from exchange.db import transaction
from exchange.errors import DependencyUnavailable
from schemas import store
from schemas.canonical import Parsed, fastavro_schema, parse
from schemas.classification import Classification, FieldInfo, downgrades
from schemas.compatibility import DEFAULT_LEVEL, Level, check
from schemas.errors import (
    ClassificationDowngrade,
    IncompatibleSchema,
    InvalidMode,
    InvalidSchema,
    InvalidVersion,
    OperationNotPermitted,
    ReferenceExists,
    SchemaNotFound,
    SubjectConfigNotFound,
    SubjectModeNotFound,
    SubjectNotFound,
    SubjectNotSoftDeleted,
    SubjectSoftDeleted,
    VersionNotFound,
    VersionNotSoftDeleted,
    VersionSoftDeleted,
)
from schemas.models import SchemaRow, SubjectRow, VersionRow
from schemas.sealing_rules import require_sealable

T = TypeVar("T")
SCHEMA_TYPES = ("AVRO",)


class Mode(StrEnum):
    READWRITE = "READWRITE"
    READONLY = "READONLY"
    IMPORT = "IMPORT"

    @classmethod
    def parse(cls, value: object) -> Mode:
        try:
            return cls(str(value).upper())
        except ValueError:
            raise InvalidMode(f"Invalid mode. Valid values are {', '.join(cls)}") from None


@dataclass(frozen=True)
class SchemaVersion:
    subject: str
    version: int
    id: int
    schema: str
    references: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False


@dataclass(frozen=True)
class StoredSchema:
    id: int
    schema: str
    parsed: Any  # fastavro parsed schema, references resolved
    fields: list[FieldInfo]
    references: list[dict[str, Any]] = field(default_factory=list)
    schema_type: str = "AVRO"


@dataclass(frozen=True)
class _New:
    """A schema about to be registered: parsed, references pinned to versions, their texts."""

    parsed: Parsed
    refs: list[dict[str, Any]]
    deps: list[str]


class SchemaRegistry:
    def __init__(self, sessions: sessionmaker[Session], audit: AuditSink) -> None:
        self.sessions = sessions
        self.audit = audit
        self._by_id: dict[int, StoredSchema] = {}
        self._parsed: dict[int, Parsed] = {}
        self._lock = threading.Lock()

    # -- registration --------------------------------------------------------------------
    def register(
        self,
        subject: str,
        schema: str,
        references: list[dict[str, Any]] | None = None,
        *,
        schema_type: str = "AVRO",
        actor: str = "system",
        actor_is_admin: bool = False,
        schema_id: int | None = None,
        version: int | None = None,
    ) -> int:
        """The global id of ``schema`` under ``subject``, registering a new version if needed.

        ``schema_id``/``version`` are honoured only in IMPORT mode (migrating a registry).
        """
        new = self._parse(subject, schema, references or [], schema_type)
        require_sealable(new.parsed.text, new.deps, new.parsed.fields)
        result = self._retrying(
            lambda: self._register_tx(subject, new, actor_is_admin, schema_id, version)
        )
        sid, new_version = result
        if new_version is not None:
            self._audit("schema.registered", actor, subject=subject, version=new_version, id=sid)
        return sid

    def check(
        self,
        subject: str,
        schema: str,
        references: list[dict[str, Any]] | None = None,
        version: int | str = "latest",
        *,
        schema_type: str = "AVRO",
    ) -> list[str]:
        """Why ``schema`` may not be registered after ``version`` (empty = compatible).

        ``version="latest"`` applies the subject's level (transitive ones to all versions);
        an explicit version is checked against that version alone.
        """
        parsed = self._parse(subject, schema, references or [], schema_type).parsed
        with transaction(self.sessions) as s:
            rows = store.versions(s, subject)
            level = self._level(s, subject)
        if version in ("latest", -1, "-1"):
            existing = [self._parsed_by_id(r.schema_id).avro for r in rows]
        else:
            target = self.version(subject, version)
            existing = [self._parsed_by_id(target.id).avro]
            level = Level(level.removesuffix("_TRANSITIVE"))
        return check(level, parsed.avro, existing)

    def lookup(
        self,
        subject: str,
        schema: str,
        references: list[dict[str, Any]] | None = None,
        *,
        deleted: bool = False,
        schema_type: str = "AVRO",
    ) -> SchemaVersion:
        """The version of ``subject`` holding ``schema`` (POST /subjects/{s})."""
        parsed = self._parse(subject, schema, references or [], schema_type).parsed
        with transaction(self.sessions) as s:
            rows = store.versions(s, subject, deleted=deleted)
            if not rows:
                raise SubjectNotFound(f"Subject '{subject}' not found.")
            row = store.schema_by_fingerprint(s, parsed.fingerprint)
            match = [v for v in rows if row is not None and v.schema_id == row.id]
            if row is None or not match:
                raise SchemaNotFound("Schema not found")
            v = match[-1]
            return SchemaVersion(subject, v.version, row.id, row.schema, row.references, v.deleted)

    # -- reads ---------------------------------------------------------------------------
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

    def versions(self, subject: str, *, deleted: bool = False) -> list[int]:
        with transaction(self.sessions) as s:
            rows = store.versions(s, subject, deleted=deleted)
        if not rows:
            raise SubjectNotFound(f"Subject '{subject}' not found.")
        return [r.version for r in rows]

    def subjects(self, *, deleted: bool = False, prefix: str = "") -> list[str]:
        with transaction(self.sessions) as s:
            return [n for n in store.subjects(s, deleted=deleted) if n.startswith(prefix)]

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
        parsed = parse(text, dep_texts, _ref_keys(refs))
        stored = StoredSchema(
            schema_id, text, fastavro_schema(text, dep_texts), parsed.fields, refs
        )
        with self._lock:
            self._parsed.setdefault(schema_id, parsed)
            return self._by_id.setdefault(schema_id, stored)

    def usages(self, schema_id: int, *, deleted: bool = False) -> list[tuple[str, int]]:
        self.by_id(schema_id)  # 40403 when unknown
        with transaction(self.sessions) as s:
            return [(v.subject, v.version) for v in store.usages(s, schema_id, deleted=deleted)]

    def referenced_by(self, subject: str, version: int | str = "latest") -> list[int]:
        v = self.version(subject, version)
        with transaction(self.sessions) as s:
            return store.referenced_by(s, subject, v.version)

    def fields(self, subject: str, version: int | str = "latest") -> list[FieldInfo]:
        return self.by_id(self.version(subject, version).id).fields

    # -- deletes -------------------------------------------------------------------------
    def delete_subject(
        self, subject: str, *, permanent: bool = False, actor: str = "system"
    ) -> list[int]:
        def tx() -> list[int]:
            with transaction(self.sessions) as s:
                self._writable(s, store.lock_subject(s, subject).mode, subject)
                rows = store.versions(s, subject, deleted=True)
                if not rows:
                    raise SubjectNotFound(f"Subject '{subject}' not found.")
                live = [r for r in rows if not r.deleted]
                if permanent and live:
                    raise SubjectNotSoftDeleted(
                        f"Subject '{subject}' was not deleted first before being permanently "
                        "deleted"
                    )
                if not permanent and not live:
                    raise SubjectSoftDeleted(
                        f"Subject '{subject}' was soft deleted.Set permanent=true to delete "
                        "permanently"
                    )
                targets = rows if permanent else live
                for r in targets:
                    self._not_referenced(s, r)
                    if permanent:
                        s.delete(r)
                    else:
                        r.deleted = True
                return [r.version for r in targets]

        done = tx()
        self._audit("schema.deleted", actor, subject=subject, versions=done, permanent=permanent)
        return done

    def delete_version(
        self, subject: str, version: int | str, *, permanent: bool = False, actor: str = "system"
    ) -> int:
        number = parse_version(version)

        def tx() -> int:
            with transaction(self.sessions) as s:
                self._writable(s, store.lock_subject(s, subject).mode, subject)
                rows = store.versions(s, subject, deleted=True)
                if not rows:
                    raise SubjectNotFound(f"Subject '{subject}' not found.")
                if number is None:
                    live = [r for r in rows if not r.deleted]
                    row = live[-1] if live else None
                else:
                    row = next((r for r in rows if r.version == number), None)
                if row is None:
                    raise VersionNotFound(f"Version {version} not found.")
                if permanent and not row.deleted:
                    raise VersionNotSoftDeleted(
                        f"Subject '{subject}' Version {row.version} was not deleted first "
                        "before being permanently deleted"
                    )
                if not permanent and row.deleted:
                    raise VersionSoftDeleted(
                        f"Subject '{subject}' Version {row.version} was soft deleted.Set "
                        "permanent=true to delete permanently"
                    )
                self._not_referenced(s, row)
                if permanent:
                    s.delete(row)
                else:
                    row.deleted = True
                return row.version

        done = tx()
        self._audit("schema.deleted", actor, subject=subject, versions=[done], permanent=permanent)
        return done

    # -- config and mode -----------------------------------------------------------------
    def set_config(self, subject: str | None, level: str, *, actor: str = "system") -> Level:
        parsed = Level.parse(level)
        with transaction(self.sessions) as s:
            store.lock_subject(s, subject or store.GLOBAL).compatibility = parsed.value
        self._audit("schema.config_changed", actor, subject=subject, compatibility=parsed.value)
        return parsed

    def get_config(self, subject: str | None = None, *, default_to_global: bool = False) -> Level:
        with transaction(self.sessions) as s:
            if subject is None or default_to_global:
                return self._level(s, subject or store.GLOBAL)
            row = store.setting(s, subject)
            if row is None or row.compatibility is None:
                raise SubjectConfigNotFound(
                    f"Subject '{subject}' does not have subject-level compatibility configured"
                )
            return Level(row.compatibility)

    def delete_config(self, subject: str | None, *, actor: str = "system") -> Level:
        """Remove the subject's level (or reset the global one); returns the previous level."""
        with transaction(self.sessions) as s:
            row = store.lock_subject(s, subject or store.GLOBAL)
            previous = row.compatibility
            if subject is not None and previous is None:
                raise SubjectConfigNotFound(
                    f"Subject '{subject}' does not have subject-level compatibility configured"
                )
            row.compatibility = None
        self._audit("schema.config_changed", actor, subject=subject, compatibility=None)
        return Level(previous) if previous else DEFAULT_LEVEL

    def get_mode(self, subject: str | None = None, *, default_to_global: bool = False) -> Mode:
        with transaction(self.sessions) as s:
            row = store.setting(s, subject or store.GLOBAL)
            if row is not None and row.mode:
                return Mode(row.mode)
            if subject is not None and not default_to_global:
                raise SubjectModeNotFound(f"Subject '{subject}' does not have subject-level mode")
            glob = store.setting(s, store.GLOBAL)
            return Mode(glob.mode) if glob is not None and glob.mode else Mode.READWRITE

    def set_mode(
        self, subject: str | None, mode: str, *, force: bool = False, actor: str = "system"
    ) -> Mode:
        parsed = Mode.parse(mode)
        with transaction(self.sessions) as s:
            row = store.lock_subject(s, subject or store.GLOBAL)
            if parsed is Mode.IMPORT and not force:
                live = store.versions(s, subject) if subject else store.subjects(s)
                if live:
                    raise OperationNotPermitted("Cannot import since found existing subjects")
            row.mode = parsed.value
        self._audit("schema.mode_changed", actor, subject=subject, mode=parsed.value)
        return parsed

    def delete_mode(self, subject: str, *, actor: str = "system") -> Mode:
        with transaction(self.sessions) as s:
            row = store.lock_subject(s, subject)
            previous = row.mode
            if previous is None:
                raise SubjectModeNotFound(f"Subject '{subject}' does not have subject-level mode")
            row.mode = None
        self._audit("schema.mode_changed", actor, subject=subject, mode=None)
        return Mode(previous)

    # -- internals -----------------------------------------------------------------------
    def _parse(
        self, subject: str, text: str, references: list[dict[str, Any]], schema_type: str
    ) -> _New:
        if not subject or len(subject) > 255 or any(ord(c) < 32 for c in subject):
            raise InvalidSchema("Invalid subject name")
        if (schema_type or "AVRO").upper() not in SCHEMA_TYPES:
            raise InvalidSchema(f"Invalid schema type {schema_type}: only AVRO is supported")
        if not isinstance(text, str) or not text.strip():
            raise InvalidSchema("Invalid schema: empty")
        refs = [self._resolve_ref(r) for r in references]
        deps = self._reference_texts(refs)
        return _New(parse(text, deps, _ref_keys(refs)), refs, deps)

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

    def _parsed_by_id(self, schema_id: int) -> Parsed:
        self.by_id(schema_id)
        return self._parsed[schema_id]

    def _register_tx(
        self,
        subject: str,
        new: _New,
        actor_is_admin: bool,
        schema_id: int | None,
        version: int | None,
    ) -> tuple[int, int | None]:
        parsed = new.parsed
        with transaction(self.sessions) as s:
            lock = store.lock_subject(s, subject)
            mode = self._mode(s, lock.mode)
            self._writable(s, mode.value, subject)
            rows = store.versions(s, subject)
            existing = store.schema_by_fingerprint(s, parsed.fingerprint)
            if existing is not None and any(r.schema_id == existing.id for r in rows):
                return existing.id, None  # already registered here: same id, no new version
            if mode is Mode.IMPORT:  # a migration: no compatibility check, but classification
                self._guard_classification(lock, rows, parsed, actor_is_admin)
                return self._import(s, subject, new, existing, schema_id, version)
            if schema_id is not None or version is not None:
                raise OperationNotPermitted("Explicit ids and versions need IMPORT mode")
            level = self._level(s, subject)
            olds = [self._parsed_by_id(r.schema_id).avro for r in rows]
            if problems := check(level, parsed.avro, olds):
                raise IncompatibleSchema(
                    "Schema being registered is incompatible with an earlier schema for "
                    f'subject "{subject}", details: [{", ".join(problems)}]',
                    problems,
                )
            self._guard_classification(lock, rows, parsed, actor_is_admin)
            row = existing or store.add_schema(
                s, parsed.fingerprint, parsed.text, new.refs, new.deps
            )
            number = store.next_version(s, subject)
            s.add(
                VersionRow(
                    subject=subject,
                    version=number,
                    schema_id=row.id,
                    deleted=False,
                    created_at=store.now(),
                )
            )
            return row.id, number

    def _guard_classification(
        self, lock: SubjectRow, rows: list[VersionRow], parsed: Parsed, actor_is_admin: bool
    ) -> None:
        """Refuse a lowered field classification unless the actor is an admin; remember.

        The baseline is what the subject has ever said about each field (not only its live
        versions): deleting the subject, or dropping a field and adding it back lower, is a
        downgrade too.
        """
        memory = dict(lock.classifications or {})
        if not memory and rows:  # subjects registered before the memory existed
            memory = {f.path: f.classification.value for f in self.by_id(rows[-1].schema_id).fields}
        baseline = [FieldInfo(p, Classification(c), False, None) for p, c in memory.items()]
        if not actor_is_admin and (lowered := downgrades(baseline, parsed.fields)):
            raise ClassificationDowngrade(
                "Lowering a field's classification requires the admin role: " + "; ".join(lowered)
            )
        lock.classifications = memory | {f.path: f.classification.value for f in parsed.fields}

    def _import(
        self,
        s: Session,
        subject: str,
        new: _New,
        existing: SchemaRow | None,
        schema_id: int | None,
        version: int | None,
    ) -> tuple[int, int]:
        if existing is not None and schema_id is not None and existing.id != schema_id:
            raise OperationNotPermitted(
                f"Schema already registered with id {existing.id} instead of input id {schema_id}"
            )
        if existing is None and schema_id is not None:
            taken = s.get(SchemaRow, schema_id)
            if taken is not None:
                raise OperationNotPermitted(
                    f"Overwrite new schema with id {schema_id} not permitted"
                )
        row = existing or store.add_schema(
            s, new.parsed.fingerprint, new.parsed.text, new.refs, new.deps, schema_id=schema_id
        )
        number = version if version is not None else store.next_version(s, subject)
        if s.get(VersionRow, (subject, number)) is not None:
            raise OperationNotPermitted(f"Version {number} of subject {subject} already exists")
        s.add(
            VersionRow(
                subject=subject,
                version=number,
                schema_id=row.id,
                deleted=False,
                created_at=store.now(),
            )
        )
        return row.id, number

    def _writable(self, s: Session, subject_mode: str | None, subject: str) -> None:
        if self._mode(s, subject_mode) is Mode.READONLY:
            raise OperationNotPermitted(f"Subject {subject} is in read-only mode")

    def _mode(self, s: Session, subject_mode: str | None) -> Mode:
        if subject_mode:
            return Mode(subject_mode)
        glob = store.setting(s, store.GLOBAL)
        return Mode(glob.mode) if glob is not None and glob.mode else Mode.READWRITE

    def _level(self, s: Session, subject: str) -> Level:
        for scope in (subject, store.GLOBAL):
            row = store.setting(s, scope)
            if row is not None and row.compatibility:
                return Level(row.compatibility)
        return DEFAULT_LEVEL

    def _not_referenced(self, s: Session, row: VersionRow) -> None:
        if users := store.referenced_by(s, row.subject, row.version):
            raise ReferenceExists(
                f"One or more references exist to the schema {{subject={row.subject}, "
                f"version={row.version}}} (schema ids {users})"
            )

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


MAX_ID = 2**31 - 1  # Confluent's ids and versions are Java ints


def parse_version(version: int | str) -> int | None:
    """None for "latest"/-1; a positive int otherwise; InvalidVersion for anything else."""
    if version in ("latest", -1, "-1"):
        return None
    try:
        number = int(version)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or number > MAX_ID:
        raise InvalidVersion(
            f"The specified version '{version}' is not a valid version id. Allowed values are "
            'between [1, 2^31-1] and the string "latest"'
        )
    return number


def _ref_keys(refs: list[dict[str, Any]]) -> list[Any]:
    return [[r["name"], r["subject"], r["version"]] for r in refs]

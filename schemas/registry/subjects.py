"""Subjects and their versions: register, look up, list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from exchange.db import transaction
from exchange.errors import NotFound
from schemas import store
from schemas.classification import FieldInfo
from schemas.errors import (
    IdDoesNotMatch,
    IncompatibleSchema,
    OperationNotPermitted,
    SchemaNotFound,
    SubjectNotFound,
)
from schemas.models import SchemaRow, VersionRow
from schemas.registry.base import New
from schemas.registry.rules import Rules
from schemas.registry.types import Mode, SchemaVersion
from schemas.sealing_rules import require_sealable


@dataclass(frozen=True)
class Registered:
    id: int
    version: int
    schema: str
    references: list[dict[str, Any]]
    new: bool  # False: the schema was already registered under this subject


class Subjects(Rules):
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
        normalize: bool = False,
    ) -> int:
        """The global id of ``schema`` under ``subject``, registering a new version if needed.

        ``schema_id``/``version`` are honoured only in IMPORT mode (migrating a registry).
        """
        return self.register_full(
            subject,
            schema,
            references,
            schema_type=schema_type,
            actor=actor,
            actor_is_admin=actor_is_admin,
            schema_id=schema_id,
            version=version,
            normalize=normalize,
        ).id

    def register_full(
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
        normalize: bool = False,
    ) -> Registered:
        if not normalize:
            with transaction(self.sessions) as s:
                normalize = self._normalize(s, subject)
        new = self._parse(subject, schema, references or [], schema_type, normalize)
        require_sealable(new.parsed.text, new.deps, new.parsed.fields)
        done = self._retrying(
            lambda: self._register_tx(subject, new, actor_is_admin, schema_id, version)
        )
        if done.new:
            self._audit(
                "schema.registered", actor, subject=subject, version=done.version, id=done.id
            )
        return done

    def _register_tx(
        self,
        subject: str,
        new: New,
        actor_is_admin: bool,
        schema_id: int | None,
        version: int | None,
    ) -> Registered:
        parsed = new.parsed
        with transaction(self.sessions) as s:
            lock = store.lock_subject(s, subject)
            mode = self._mode(s, lock.mode)
            self._writable(s, mode.value, subject)
            if (schema_id is not None) != (mode is Mode.IMPORT):
                # Confluent: an explicit id needs IMPORT mode, and IMPORT mode needs an id.
                needed = "import" if schema_id is not None else "read-write"
                raise OperationNotPermitted(
                    f"Subject {subject} in context . is not in {needed} mode"
                )
            rows = store.versions(s, subject)
            existing = store.schema_by_fingerprint(s, parsed.fingerprint)
            if existing is not None and schema_id is not None and existing.id != schema_id:
                raise IdDoesNotMatch(
                    f"Schema already registered with id {existing.id} instead of input id "
                    f"{schema_id}"
                )
            if existing is not None:
                same = [r for r in rows if r.schema_id == existing.id]
                if same:  # already registered here: same id, no new version
                    return Registered(
                        existing.id, same[-1].version, existing.schema, new.refs, False
                    )
            if mode is Mode.IMPORT:  # a migration: no compatibility check, but classification
                self._guard_classification(lock, rows, parsed, actor_is_admin)
                return self._import(s, subject, new, existing, schema_id, version)
            if problems := self._check_new(s, subject, rows, parsed):
                raise IncompatibleSchema(
                    "Schema being registered is incompatible with an earlier schema for "
                    f'subject "{subject}", details: [{", ".join(problems)}]',
                    problems,
                )
            self._guard_classification(lock, rows, parsed, actor_is_admin)
            row = existing or store.add_schema(
                s, parsed.fingerprint, parsed.text, new.refs, new.deps
            )
            return self._add_version(s, subject, row, store.next_version(s, subject))

    def _import(
        self,
        s: Session,
        subject: str,
        new: New,
        existing: SchemaRow | None,
        schema_id: int | None,
        version: int | None,
    ) -> Registered:
        if existing is None and schema_id is not None and s.get(SchemaRow, schema_id) is not None:
            raise OperationNotPermitted(
                f"Overwrite new schema with id {schema_id} in context . is not permitted."
            )
        row = existing or store.add_schema(
            s, new.parsed.fingerprint, new.parsed.text, new.refs, new.deps, schema_id=schema_id
        )
        number = version if version is not None else store.next_version(s, subject)
        if s.get(VersionRow, (subject, number)) is not None:
            raise OperationNotPermitted(f"Version {number} of subject {subject} already exists")
        return self._add_version(s, subject, row, number)

    def _add_version(self, s: Session, subject: str, row: SchemaRow, number: int) -> Registered:
        s.add(
            VersionRow(
                subject=subject,
                version=number,
                schema_id=row.id,
                deleted=False,
                created_at=store.now(),
            )
        )
        return Registered(row.id, number, row.schema, list(row.references), True)

    def lookup(
        self,
        subject: str,
        schema: str,
        references: list[dict[str, Any]] | None = None,
        *,
        deleted: bool = False,
        schema_type: str = "AVRO",
        normalize: bool = False,
    ) -> SchemaVersion:
        """The version of ``subject`` holding ``schema`` (POST /subjects/{s})."""
        with transaction(self.sessions) as s:
            normalize = normalize or self._normalize(s, subject)
        parsed = self._parse(subject, schema, references or [], schema_type, normalize).parsed
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

    # -- listings ------------------------------------------------------------------------
    def versions(
        self, subject: str, *, deleted: bool = False, deleted_only: bool = False
    ) -> list[int]:
        with transaction(self.sessions) as s:
            rows = store.versions(s, subject, deleted=deleted or deleted_only)
        if deleted_only:
            rows = [r for r in rows if r.deleted]
        if not rows:
            raise SubjectNotFound(f"Subject '{subject}' not found.")
        return [r.version for r in rows]

    def subjects(
        self, *, deleted: bool = False, deleted_only: bool = False, prefix: str = ""
    ) -> list[str]:
        """Subject names, sorted; a subject is deleted when all its versions are."""
        with transaction(self.sessions) as s:
            rows = store.all_versions(s, prefix)
        live: dict[str, bool] = {}
        for r in rows:
            live[r.subject] = live.get(r.subject, False) or not r.deleted
        if deleted_only:
            return sorted(n for n, alive in live.items() if not alive)
        return sorted(n for n, alive in live.items() if alive or deleted)

    def schemas(
        self, *, prefix: str = "", deleted: bool = False, latest_only: bool = False
    ) -> list[SchemaVersion]:
        """Every (subject, version) with its schema, by subject then version (GET /schemas)."""
        with transaction(self.sessions) as s:
            rows = [r for r in store.all_versions(s, prefix) if deleted or not r.deleted]
            texts = store.schemas_by_id(s, {r.schema_id for r in rows})
        if latest_only:
            rows = list({r.subject: r for r in rows}.values())
        return [
            SchemaVersion(
                r.subject,
                r.version,
                r.schema_id,
                texts[r.schema_id].schema,
                list(texts[r.schema_id].references),
                r.deleted,
            )
            for r in rows
        ]

    def usages(
        self, schema_id: int, *, deleted: bool = False, subject: str | None = None
    ) -> list[tuple[str, int]]:
        self.by_id(schema_id)  # 40403 when unknown
        with transaction(self.sessions) as s:
            rows = store.usages(s, schema_id, deleted=deleted)
        return [(v.subject, v.version) for v in rows if subject is None or v.subject == subject]

    def referenced_by(self, subject: str, version: int | str = "latest") -> list[int]:
        v = self.version(subject, version)
        with transaction(self.sessions) as s:
            return store.referenced_by(s, subject, v.version)

    def fields(self, subject: str, version: int | str = "latest") -> list[FieldInfo]:
        return self.by_id(self.version(subject, version).id).fields

    def latest_fields(self, subject: str) -> list[FieldInfo] | None:
        """The latest version's fields with their classification; None if there is none."""
        try:
            return self.fields(subject)
        except NotFound:
            return None

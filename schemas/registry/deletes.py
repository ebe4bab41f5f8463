"""Soft and permanent deletes of subjects and versions, with Confluent's preconditions."""

from __future__ import annotations

from sqlalchemy.orm import Session

from exchange.db import transaction
from schemas import store
from schemas.errors import (
    ReferenceExists,
    SubjectNotFound,
    SubjectNotSoftDeleted,
    SubjectSoftDeleted,
    VersionNotFound,
    VersionNotSoftDeleted,
    VersionSoftDeleted,
)
from schemas.models import VersionRow
from schemas.registry.base import RegistryBase
from schemas.registry.types import parse_version


class Deletes(RegistryBase):
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
                    self._remove(s, r, permanent)
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
                self._remove(s, row, permanent)
                return row.version

        done = tx()
        self._audit("schema.deleted", actor, subject=subject, versions=[done], permanent=permanent)
        return done

    def _remove(self, s: Session, row: VersionRow, permanent: bool) -> None:
        if store.referenced_by(s, row.subject, row.version):
            raise ReferenceExists(
                "One or more references exist to the schema "
                f"{{magic=1,keytype=SCHEMA,subject={row.subject},version={row.version}}}."
            )
        if permanent:
            s.delete(row)
        else:
            row.deleted = True

"""The rules a new version must pass: Avro compatibility and field classification.

Both the compatibility endpoint and registration ask the same question here, so "compatible"
from a check means registration will not refuse the schema for these reasons either.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from exchange.db import transaction
from schemas import store
from schemas.canonical import Parsed
from schemas.classification import Classification, FieldInfo, downgrades
from schemas.compatibility import Level, check
from schemas.errors import ClassificationDowngrade, VersionNotFound
from schemas.models import SubjectRow, VersionRow
from schemas.registry.base import RegistryBase
from schemas.registry.types import parse_version

ADMIN_NEEDED = "lowering a field's classification requires the admin role"


class Rules(RegistryBase):
    def check(
        self,
        subject: str,
        schema: str,
        references: list[dict[str, Any]] | None = None,
        version: int | str | None = "latest",
        *,
        schema_type: str = "AVRO",
        normalize: bool = False,
        actor_is_admin: bool = False,
    ) -> list[str]:
        """Confluent's messages saying why ``schema`` may not follow (empty = compatible).

        ``version`` "latest" or a number checks against that one version (40402 when it does
        not exist), None against all live versions; the subject's level decides the
        direction. Classification rules are checked against the subject's history.
        """
        number = None if version is None else parse_version(version)
        with transaction(self.sessions) as s:
            rows = store.versions(s, subject)
            if number is not None:
                rows = [r for r in rows if r.version == number]
                if not rows:
                    raise VersionNotFound(f"Version {number} not found.")
            elif version is not None:
                rows = rows[-1:]
            level = self._level(s, subject)
            normalize = normalize or self._normalize(s, subject)
            memory = self._memory(store.setting(s, subject), store.versions(s, subject))
        parsed = self._parse(subject, schema, references or [], schema_type, normalize).parsed
        problems = check(level, parsed.avro, self._priors(rows))
        if not actor_is_admin:
            problems += [_message(d) for d in downgrades(memory, parsed.fields)]
        return problems

    def _check_new(
        self, s: Session, subject: str, rows: list[VersionRow], parsed: Parsed
    ) -> list[str]:
        """Avro compatibility of a version about to be registered (all live versions)."""
        return check(self._level(s, subject), parsed.avro, self._priors(rows))

    def _guard_classification(
        self, lock: SubjectRow, rows: list[VersionRow], parsed: Parsed, actor_is_admin: bool
    ) -> None:
        """Refuse a lowered field classification unless the actor is an admin; remember.

        The baseline is what the subject has ever said about each field (not only its live
        versions): deleting the subject, or dropping a field and adding it back lower, is a
        downgrade too.
        """
        baseline = self._memory(lock, rows)
        if not actor_is_admin and (lowered := downgrades(baseline, parsed.fields)):
            raise ClassificationDowngrade(
                "Schema being registered lowers the classification of "
                + "; ".join(lowered)
                + f": {ADMIN_NEEDED}"
            )
        remembered = {f.path: f.classification.value for f in baseline}
        lock.classifications = remembered | {f.path: f.classification.value for f in parsed.fields}

    def _memory(self, row: SubjectRow | None, rows: list[VersionRow]) -> list[FieldInfo]:
        memory = dict(row.classifications or {}) if row is not None else {}
        if not memory and rows:  # subjects registered before the memory existed
            memory = {f.path: f.classification.value for f in self.by_id(rows[-1].schema_id).fields}
        return [FieldInfo(p, Classification(c), False, None) for p, c in memory.items()]


def _message(lowered: str) -> str:
    path, _, change = lowered.partition(": ")
    return (
        "{errorType:'CLASSIFICATION_DOWNGRADE', description:'The classification of field "
        f"'{path}' is lowered ({change}) in the new schema; {ADMIN_NEEDED}', "
        f"additionalInfo:'{lowered}'}}"
    )


__all__ = ["ADMIN_NEEDED", "Level", "Rules"]

"""The schema registry service: Confluent semantics over the control-plane database.

Modules by concern:
  types.py      SchemaVersion, StoredSchema, Mode, parse_version, subject/type checks (pure)
  ownership.py  which department owns a subject, which topic it backs (pure)
  base.py       shared state: database, audit sink, id cache, version lookups, settings in scope
  rules.py      compatibility + classification rules (one answer for check and register)
  subjects.py   register, lookup, listings (subjects, versions, GET /schemas, usages)
  deletes.py    soft and permanent deletes
  settings.py   config (level, normalize) and mode
Identity and the stored text form live in ``schemas.canonical`` / ``schemas.forms``.
"""

from __future__ import annotations

from schemas.registry.deletes import Deletes
from schemas.registry.settings import Config, Settings
from schemas.registry.subjects import Registered, Subjects
from schemas.registry.types import (
    MAX_ID,
    SCHEMA_TYPES,
    Mode,
    SchemaVersion,
    StoredSchema,
    parse_version,
)


class SchemaRegistry(Subjects, Deletes, Settings):
    """The whole registry: ``SchemaRegistry(sessions, audit)``."""


__all__ = [
    "MAX_ID",
    "SCHEMA_TYPES",
    "Config",
    "Mode",
    "Registered",
    "SchemaRegistry",
    "SchemaVersion",
    "StoredSchema",
    "parse_version",
]

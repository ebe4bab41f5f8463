"""Compatibility levels and the decision "may this schema follow those?". Pure: no I/O.

The Avro resolution rules themselves come from the ``avro`` package's
ReaderWriterCompatibilityChecker (a port of Java's SchemaCompatibility).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from schemas.errors import InvalidCompatibility


class Level(StrEnum):
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @classmethod
    def parse(cls, value: object) -> Level:
        try:
            return cls(str(value).upper())
        except ValueError:
            raise InvalidCompatibility(
                f"Invalid compatibility level. Valid values are {', '.join(cls)}"
            ) from None


DEFAULT_LEVEL = Level.BACKWARD


def can_read(reader: avro.schema.Schema, writer: avro.schema.Schema) -> list[str]:
    """Why ``reader`` cannot read data written with ``writer``; empty = it can."""
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = ", ".join(sorted({i.name.upper() for i in result.incompatibilities}))
    where = ", ".join(sorted(result.locations))
    return [
        f"{{errorType:'{kinds}', description:'{m}', location:'{where}'}}"
        for m in sorted(result.messages)
    ] or [f"{{errorType:'{kinds}', location:'{where}'}}"]


def check(
    level: Level, new: avro.schema.Schema, existing: Sequence[avro.schema.Schema]
) -> list[str]:
    """Messages explaining why ``new`` may not follow ``existing`` (oldest first) at ``level``."""
    if level is Level.NONE or not existing:
        return []
    against = existing if level.endswith("_TRANSITIVE") else existing[-1:]
    problems: list[str] = []
    for i, old in enumerate(reversed(against)):
        label = f"version {len(existing) - i}" if level.endswith("_TRANSITIVE") else "latest"
        if level.startswith(("BACKWARD", "FULL")):
            problems += [f"{label} (new schema reads old data): {m}" for m in can_read(new, old)]
        if level.startswith(("FORWARD", "FULL")):
            problems += [f"{label} (old schema reads new data): {m}" for m in can_read(old, new)]
    return problems

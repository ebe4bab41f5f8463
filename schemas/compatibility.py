"""Compatibility levels and the decision "may this schema follow those?". Pure: no I/O.

The Avro resolution rules themselves come from the ``avro`` package's
ReaderWriterCompatibilityChecker (a port of Java's SchemaCompatibility); the messages are
Confluent's (``{errorType:'...', description:'...', additionalInfo:'...'}``, one per
incompatibility, then ``{oldSchemaVersion: n}``, ``{oldSchema: '...'}`` and the level).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import avro.compatibility as avro_compat
import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker

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
                "Invalid compatibility level. Valid values are none, backward, forward, full, "
                "backward_transitive, forward_transitive, and full_transitive"
            ) from None


DEFAULT_LEVEL = Level.BACKWARD


@dataclass(frozen=True)
class Prior:
    """An earlier version of the subject, as the check needs it."""

    version: int
    text: str
    avro: avro.schema.Schema


@dataclass(frozen=True)
class Incompatibility:
    kind: str  # Java's SchemaIncompatibilityType name, e.g. TYPE_MISMATCH
    message: str
    location: str


_DESCRIPTIONS = {
    "FIXED_SIZE_MISMATCH": "The size of FIXED type field at path '{path}' in the {r} schema "
    "does not match with the {w} schema",
    "TYPE_MISMATCH": "The type (path '{path}') of a field in the {r} schema does not match "
    "with the {w} schema",
    "NAME_MISMATCH": "The name of the schema has changed (path '{path}')",
    "MISSING_ENUM_SYMBOLS": "The {r} schema is missing enum symbols '{msg}' at path '{path}' "
    "in the {w} schema",
    "MISSING_UNION_BRANCH": "The {r} schema is missing a type inside a union field at path "
    "'{path}' in the {w} schema",
    "READER_FIELD_MISSING_DEFAULT_VALUE": "The field '{msg}' at path '{path}' in the {r} schema "
    "has no default value and is missing in the {w} schema",
}
_record_lock = threading.Lock()


def incompatibilities(
    reader: avro.schema.Schema, writer: avro.schema.Schema
) -> list[Incompatibility]:
    """Each reason ``reader`` cannot read data written with ``writer``; empty = it can."""
    found: list[Incompatibility] = []
    original = avro_compat.incompatible

    def record(kind: Any, message: str, location: list[str]) -> Any:
        result = original(kind, message, location)
        found.append(Incompatibility(kind.name.upper(), message, next(iter(result.locations))))
        return result

    # The avro package merges reasons into unordered sets; record each one as it is made.
    with _record_lock:
        avro_compat.incompatible = record  # type: ignore[assignment]
        try:
            checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
            result = checker.get_compatibility(reader, writer)
        finally:
            avro_compat.incompatible = original
    # Union branches that were tried and dropped made reasons too: keep those in the result.
    kinds = {k.name.upper() for k in result.incompatibilities}
    return [
        i
        for i in dict.fromkeys(found)
        if i.kind in kinds and i.message in result.messages and i.location in result.locations
    ]


def difference(i: Incompatibility, reader: str, writer: str) -> str:
    """One incompatibility as Confluent words it (``reader``/``writer``: "new" or "old")."""
    info = _java_types(i.message)
    template = _DESCRIPTIONS.get(i.kind, "")
    text = template.format(path=i.location, r=reader, w=writer, msg=info)
    return f"{{errorType:'{i.kind}', description:'{text}', additionalInfo:'{info}'}}"


def can_read(reader: avro.schema.Schema, writer: avro.schema.Schema) -> list[str]:
    """Why ``reader`` (the new schema) cannot read data written with ``writer`` (the old)."""
    return [difference(i, "new", "old") for i in incompatibilities(reader, writer)]


def check(level: Level, new: avro.schema.Schema, existing: Sequence[Prior]) -> list[str]:
    """Confluent's messages for ``new`` following ``existing`` (oldest first); empty = ok.

    Transitive levels check every version, newest first, and stop at the first that fails;
    the others check the newest only.
    """
    if level is Level.NONE or not existing:
        return []
    against = existing if level.endswith("_TRANSITIVE") else existing[-1:]
    for old in reversed(against):
        problems = _against(level, new, old)
        if problems:
            return [*problems, f"{{validateFields: 'false', compatibility: '{level.value}'}}"]
    return []


def _against(level: Level, new: avro.schema.Schema, old: Prior) -> list[str]:
    forward, backward = [], []
    if level.startswith(("FORWARD", "FULL")):
        forward = [difference(i, "old", "new") for i in incompatibilities(old.avro, new)]
    if level.startswith(("BACKWARD", "FULL")):
        backward = [difference(i, "new", "old") for i in incompatibilities(new, old.avro)]
    # Confluent appends the old schema after each failing half, except FULL's forward half.
    after_forward = _old(old) if forward and level.startswith("FORWARD") else []
    return [*forward, *after_forward, *backward, *(_old(old) if backward else [])]


def _old(old: Prior) -> list[str]:
    return [f"{{oldSchemaVersion: {old.version}}}", f"{{oldSchema: '{old.text}'}}"]


def _java_types(message: str) -> str:
    # Java names the Avro types in capitals ("reader type: INT not compatible with ...").
    prefix, sep, rest = message.partition("reader type: ")
    if not sep:
        return message
    reader, sep2, writer = rest.partition(" not compatible with writer type: ")
    return f"{prefix}reader type: {reader.upper()}{sep2}{writer.upper()}" if sep2 else message

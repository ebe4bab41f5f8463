"""Values the registry hands out, and the parsing of its small inputs. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from schemas.classification import FieldInfo
from schemas.errors import InvalidMode, InvalidSchema, InvalidVersion

SCHEMA_TYPES = ("AVRO",)
MAX_SUBJECT = 255


class Mode(StrEnum):
    READWRITE = "READWRITE"
    READONLY = "READONLY"
    IMPORT = "IMPORT"

    @classmethod
    def parse(cls, value: object) -> Mode:
        try:
            return cls(str(value).upper())
        except ValueError:
            raise InvalidMode(
                "Invalid mode. Valid values are READWRITE, READONLY, IMPORT and FORWARD."
            ) from None


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


def check_subject(subject: str) -> None:
    # Confluent takes any name; control characters would only break logs and UIs.
    if not subject or len(subject) > MAX_SUBJECT or any(ord(c) < 32 for c in subject):
        raise InvalidSchema("Invalid subject name")


def check_type(schema_type: str) -> None:
    if (schema_type or "AVRO").upper() not in SCHEMA_TYPES:
        raise InvalidSchema(f"Invalid schema type {schema_type}: only AVRO is supported")

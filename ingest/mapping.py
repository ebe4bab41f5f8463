"""The confirmed mapping of source columns to Avro fields, saved as JSON for repeat runs."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ingest.errors import SourceError

FORMAT = 1
CLASSIFICATIONS = ("public", "internal", "sensitive", "secret")
# The value types an import can fill, each with its Avro type.
TYPES: dict[str, Any] = {
    "string": "string",
    "long": "long",
    "int": "int",
    "double": "double",
    "float": "float",
    "boolean": "boolean",
    "date": {"type": "int", "logicalType": "date"},
    "timestamp-millis": {"type": "long", "logicalType": "timestamp-millis"},
    "local-timestamp-millis": {"type": "long", "logicalType": "local-timestamp-millis"},
    "decimal": None,  # bytes with precision and scale, below
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class FieldSpec:
    column: str  # the source's header, as written
    name: str  # a valid Avro name
    type: str  # a key of TYPES
    nullable: bool = True
    classification: str = "internal"
    data_subject: bool = False
    detected: str | None = None  # the ingest.detect kind that proposed the classification
    precision: int | None = None
    scale: int | None = None

    def avro_type(self) -> Any:
        if self.type == "decimal":
            return {
                "type": "bytes",
                "logicalType": "decimal",
                "precision": self.precision or 18,
                "scale": self.scale or 0,
            }
        return TYPES[self.type]

    def avro_field(self) -> dict[str, Any]:
        t = self.avro_type()
        out: dict[str, Any] = {"name": self.name, "type": ["null", t] if self.nullable else t}
        if self.nullable:
            out["default"] = None
        if self.column != self.name:
            out["doc"] = self.column
        out["classification"] = self.classification
        if self.data_subject:
            out["data_subject"] = True
        return out


@dataclass(frozen=True)
class Mapping:
    topic: str
    fields: list[FieldSpec]
    key_column: str | None = None
    record_name: str = "Row"
    namespace: str = "exchange.imported"
    # Fields of the subject's latest schema the source lacks (kept, filled with defaults).
    kept: list[dict[str, Any]] = field(default_factory=list)

    def schema(self) -> dict[str, Any]:
        return {
            "type": "record",
            "name": self.record_name,
            "namespace": self.namespace,
            "fields": [f.avro_field() for f in self.fields] + self.kept,
        }

    def digest(self) -> str:
        text = json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "topic": self.topic,
            "record_name": self.record_name,
            "namespace": self.namespace,
            "key_column": self.key_column,
            "fields": [asdict(f) for f in self.fields],
            "kept": self.kept,
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n")

    def with_field(self, name: str, **changes: Any) -> Mapping:
        if not any(f.name == name for f in self.fields):
            raise SourceError(f"no field {name!r} in the mapping")
        fields = [replace(f, **changes) if f.name == name else f for f in self.fields]
        return replace(self, fields=fields)


def load(path: Path, topic: str) -> Mapping:
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") != FORMAT:
            raise ValueError(f"unknown format {raw.get('format')!r}")
        fields = [FieldSpec(**f) for f in raw["fields"]]
        mapping = Mapping(
            topic=raw["topic"],
            fields=fields,
            key_column=raw.get("key_column"),
            record_name=raw.get("record_name", "Row"),
            namespace=raw.get("namespace", "exchange.imported"),
            kept=list(raw.get("kept", [])),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SourceError(f"cannot read mapping {path}: {exc}") from None
    if mapping.topic != topic:
        raise SourceError(f"mapping {path} is for topic {mapping.topic}, not {topic}")
    check(mapping)
    return mapping


def check(mapping: Mapping) -> None:
    names = [f.name for f in mapping.fields]
    for f in mapping.fields:
        if not _NAME.match(f.name):
            raise SourceError(f"field name {f.name!r} is not a valid Avro name")
        if f.type not in TYPES:
            raise SourceError(f"field {f.name}: type must be one of {', '.join(TYPES)}")
        if f.classification not in CLASSIFICATIONS:
            raise SourceError(
                f"field {f.name}: classification must be one of {', '.join(CLASSIFICATIONS)}"
            )
    if len(set(names)) != len(names):
        raise SourceError("two fields of the mapping have the same name")
    if mapping.key_column and mapping.key_column not in {f.column for f in mapping.fields}:
        raise SourceError(f"key column {mapping.key_column!r} is not a column of the source")

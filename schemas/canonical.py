"""Parse Avro schemas (with references) and compute their identity. Pure: no I/O.

Identity is the Avro Parsing Canonical Form plus the attributes PCF strips but that change
meaning for us (defaults, aliases, logical types, classification and tags): two texts that
differ only in whitespace, attribute order, namespace spelling or docs get the same id, while
adding a default or changing a field's classification gives a new schema.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import avro.errors
import avro.name
import avro.schema
import fastavro
from fastavro.types import NamedSchemas

from schemas.classification import FieldInfo, field_infos
from schemas.errors import InvalidSchema

FORMAT_VERSION = 1  # bump when the identity recipe changes
_KEPT = ("default", "aliases", "logicalType", "precision", "scale", "order", "classification",
         "confluent:tags", "data_subject")  # fmt: skip


@dataclass(frozen=True)
class Parsed:
    text: str
    json: Any
    avro: avro.schema.Schema
    canonical: str  # Avro Parsing Canonical Form
    fingerprint: str  # sha256 hex of the identity (see module doc)
    fields: list[FieldInfo]
    named: dict[str, Any] = field(default_factory=dict)  # full name -> JSON, incl. references


def parse(text: str, references: Sequence[str] = (), ref_keys: Sequence[Any] = ()) -> Parsed:
    """Parse ``text`` after the referenced schema texts (dependencies first).

    ``ref_keys`` (e.g. the references' name/subject/version) become part of the identity.
    Raises InvalidSchema with the parser's message.
    """
    try:
        return _parse(text, references, ref_keys)
    except RecursionError:  # hostile nesting: refuse rather than fail with a 500
        raise InvalidSchema("Invalid schema: nested too deeply") from None


def _parse(text: str, references: Sequence[str], ref_keys: Sequence[Any]) -> Parsed:
    try:
        doc = json.loads(text)
    except ValueError:
        doc = text  # Confluent accepts a bare primitive name such as "string"
    names = avro.name.Names()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unknown logical types degrade, as the spec says
            for ref in references:
                avro.schema.make_avsc_object(_json(ref), names)
            schema = avro.schema.make_avsc_object(doc, names)
    except (avro.errors.AvroException, TypeError, ValueError, AttributeError) as exc:
        raise InvalidSchema(f"Invalid schema: {exc}") from None
    named = {n: json.loads(str(s)) for n, s in names.names.items()}
    try:
        fields = field_infos(doc, named)
    except ValueError as exc:
        raise InvalidSchema(f"Invalid schema: {exc}") from None
    canonical = schema.canonical_form
    identity = json.dumps(
        [FORMAT_VERSION, canonical, _extras(doc, ""), list(ref_keys)],
        sort_keys=True,
        separators=(",", ":"),
    )
    return Parsed(
        text=text,
        json=doc,
        avro=schema,
        canonical=canonical,
        fingerprint=hashlib.sha256(identity.encode()).hexdigest(),
        fields=fields,
        named=named,
    )


def fastavro_schema(text: str, references: Sequence[str] = ()) -> Any:
    """A fastavro parsed schema, references resolved, for schemaless_writer/reader."""
    named: NamedSchemas = {}
    for ref in references:
        fastavro.parse_schema(_json(ref), named_schemas=named)
    return fastavro.parse_schema(_json(text), named_schemas=named)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _extras(node: Any, path: str) -> dict[str, Any]:
    """The meaning-bearing attributes PCF drops, keyed by their JSON path."""
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        kept = {k: node[k] for k in _KEPT if k in node}
        if kept:
            out[path or "/"] = kept
        for key, value in node.items():
            if key not in _KEPT:
                out.update(_extras(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.update(_extras(value, f"{path}/{i}"))
    return out

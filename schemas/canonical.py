"""Parse Avro schemas (with references) and compute their identity. Pure: no I/O.

Identity is Confluent's: the schema text as it is stored (``schemas.forms.confluent_form``,
or ``normalized_form`` when normalising) plus the pinned references. Whitespace does not
matter; ``doc``, custom properties and attribute spelling do, exactly as in Confluent.
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
from schemas.forms import confluent_form, normalized_form

FORMAT_VERSION = 2  # bump when the identity recipe changes (2: the stored text)


@dataclass(frozen=True)
class Parsed:
    text: str
    json: Any
    avro: avro.schema.Schema
    canonical: str  # Avro Parsing Canonical Form
    fingerprint: str  # sha256 hex of the identity (see module doc)
    fields: list[FieldInfo]
    named: dict[str, Any] = field(default_factory=dict)  # full name -> JSON, incl. references


def parse(
    text: str,
    references: Sequence[str] = (),
    ref_keys: Sequence[Any] = (),
    *,
    normalize: bool = False,
) -> Parsed:
    """Parse ``text`` after the referenced schema texts (dependencies first).

    ``Parsed.text`` is the form stored and returned (normalised when ``normalize``);
    ``ref_keys`` (e.g. the references' name/subject/version) become part of the identity.
    Raises InvalidSchema with the parser's message.
    """
    try:
        return _parse(text, references, ref_keys, normalize)
    except RecursionError:  # hostile nesting: refuse rather than fail with a 500
        raise InvalidSchema("Invalid schema: nested too deeply") from None


def _parse(
    text: str, references: Sequence[str], ref_keys: Sequence[Any], normalize: bool
) -> Parsed:
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
            known = set(names.names)
            schema = avro.schema.make_avsc_object(doc, names)
    except (avro.errors.AvroException, TypeError, ValueError, AttributeError) as exc:
        raise InvalidSchema(f"Invalid schema: {exc}") from None
    named = {n: json.loads(str(s)) for n, s in names.names.items()}
    try:
        fields = field_infos(doc, named)
    except ValueError as exc:
        raise InvalidSchema(f"Invalid schema: {exc}") from None
    stored = normalized_form(doc, known) if normalize else confluent_form(doc, known)
    return Parsed(
        text=stored,
        json=doc,
        avro=schema,
        canonical=schema.canonical_form,
        fingerprint=fingerprint(stored, ref_keys),
        fields=fields,
        named=named,
    )


def fingerprint(stored: str, ref_keys: Sequence[Any] = ()) -> str:
    """The identity of a stored schema text with its pinned references."""
    identity = json.dumps([FORMAT_VERSION, stored, list(ref_keys)], separators=(",", ":"))
    return hashlib.sha256(identity.encode()).hexdigest()


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

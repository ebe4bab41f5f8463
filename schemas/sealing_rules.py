"""Which fields are sealed, as a rule over the schema's types, and the registration check.

A field of a record type whose classification is ``sensitive`` or ``secret`` is sealed in that
type's definition, so wherever the type occurs (see :mod:`exchange.crypto.sealing`). A schema
whose sealed fields could not be found again in every value, or whose sealed paths would
disagree with the classified paths the policy reasons about, is refused when it is registered
(422 naming the field) rather than accepted and then refused on every publish.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from exchange import avro_paths
from exchange.crypto.sealing import SEALED, sealed_fields, sealed_schema_where
from exchange.errors import InvalidInput
from schemas.canonical import fastavro_schema
from schemas.classification import Classification, FieldInfo, classify
from schemas.errors import InvalidSchema

SEALED_CLASSES = frozenset({Classification.SENSITIVE, Classification.SECRET})


def is_sealed(record: str, field: Mapping[str, Any]) -> bool:
    """The sealing rule: by the field's own classification (unknown values fail closed)."""
    try:
        return classify(field) in SEALED_CLASSES
    except ValueError:
        return True


def sealed_form(parsed: Any, fields: Sequence[FieldInfo]) -> dict[str, Any] | None:
    """The sealed schema of a plain one (fastavro-parsed or JSON), None if nothing is sealed.

    Raises :class:`InvalidInput` naming the field when the schema cannot be sealed.
    """
    wanted = {f.path for f in fields if f.classification in SEALED_CLASSES}
    if not wanted:
        return None
    sealed = sealed_schema_where(parsed, is_sealed)
    shape = avro_paths.compile_shape(sealed, lambda rec, f: bool(f.get(SEALED)))
    why = avro_paths.problems(shape)
    got = set(sealed_fields(sealed))
    # Two walks disagreeing must never mean an unsealed sensitive field. A classified field
    # inside a sealed one is sealed with it.
    wrong = sorted({p for p in wanted - got if not _inside(p, got)} | (got - wanted))
    if wrong:
        why.append(f"classified fields {wrong} cannot be sealed where the policy expects them")
    if why:
        raise InvalidInput("cannot seal this schema's classified fields: " + "; ".join(why))
    return sealed


def require_sealable(text: str, references: Sequence[str], fields: Sequence[FieldInfo]) -> None:
    """Registration's check: the publish path can seal every classified field (else 422)."""
    if not any(f.classification in SEALED_CLASSES for f in fields):
        return
    try:
        parsed = fastavro_schema(text, references)
    except Exception as exc:  # fastavro raises several types for schemas it cannot take
        raise InvalidSchema(f"Invalid schema: {exc}") from None
    try:
        sealed_form(parsed, fields)
    except InvalidInput as exc:
        raise InvalidSchema(f"Invalid schema: {exc.message}") from None


def _inside(path: str, sealed: set[str]) -> bool:
    parts = path.split(".")
    return any(".".join(parts[:i]) in sealed for i in range(1, len(parts)))

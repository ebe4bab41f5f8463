"""Field classification read from schema attributes. Pure: no I/O.

A field may say ``"classification": "public" | "internal" | "sensitive" | "secret"``; Confluent's
``"confluent:tags": ["PII"]`` (on the field or on its type) means sensitive; otherwise internal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Classification(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    SENSITIVE = "sensitive"
    SECRET = "secret"  # noqa: S105 - a classification, not a password

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {c: i for i, c in enumerate(Classification)}
_PII_TAGS = frozenset({"PII"})


@dataclass(frozen=True)
class FieldInfo:
    # dotted path of a field inside nested records, e.g. "address.street"; arrays, maps and
    # unions add nothing, recursion maps back (exchange.avro_paths)
    path: str
    classification: Classification
    data_subject: bool  # field attribute "data_subject": true
    avro_type: Any  # the field's type JSON


def field_infos(
    schema: dict[str, Any] | list[Any] | str, named: Mapping[str, Any] | None = None
) -> list[FieldInfo]:
    """Every field of every record reachable from ``schema``, depth first.

    ``named`` maps full names of types defined elsewhere (schema references) to their JSON.
    Raises ValueError for an unknown classification value.
    """
    known: dict[str, Any] = dict(named or {})
    return _merged(_walk(_load(schema), "", None, known, ()))


def _merged(infos: Iterator[FieldInfo]) -> list[FieldInfo]:
    """One entry per path. Union branches may each have a field of one name (one path): the
    path is as classified as the highest of them, since one grant covers them all."""
    out: dict[str, FieldInfo] = {}
    for f in infos:
        seen = out.get(f.path)
        if seen is None:
            out[f.path] = f
        elif f.classification.rank > seen.classification.rank or (
            f.data_subject and not seen.data_subject
        ):
            top = max(f.classification, seen.classification, key=lambda c: c.rank)
            out[f.path] = FieldInfo(
                f.path, top, f.data_subject or seen.data_subject, seen.avro_type
            )
    return list(out.values())


def classify(field: Mapping[str, Any]) -> Classification:
    explicit = field.get("classification")
    if explicit is not None:
        try:
            return Classification(explicit)
        except ValueError:
            raise ValueError(
                f"field {field.get('name')!r}: classification must be one of "
                f"{', '.join(c.value for c in Classification)}"
            ) from None
    ftype = field.get("type")
    tags = set(_tags(field)) | (set(_tags(ftype)) if isinstance(ftype, dict) else set())
    return Classification.SENSITIVE if tags & _PII_TAGS else Classification.INTERNAL


def downgrades(old: list[FieldInfo], new: list[FieldInfo]) -> list[str]:
    """Fields whose classification is lower in ``new`` than in ``old`` (removed fields are not)."""
    before = {f.path: f.classification for f in old}
    return [
        f"{f.path}: {before[f.path].value} -> {f.classification.value}"
        for f in new
        if f.path in before and f.classification.rank < before[f.path].rank
    ]


def _load(schema: dict[str, Any] | list[Any] | str) -> Any:
    if isinstance(schema, str):
        try:
            return json.loads(schema)
        except ValueError:
            return schema  # a bare primitive or type name
    return schema


def _tags(node: Any) -> list[str]:
    tags = node.get("confluent:tags") if isinstance(node, Mapping) else None
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _fullname(node: Mapping[str, Any], namespace: str | None) -> str:
    name = str(node.get("name", ""))
    if "." in name:
        return name
    ns = node.get("namespace", namespace)
    return f"{ns}.{name}" if ns else name


def _walk(
    node: Any, prefix: str, namespace: str | None, known: dict[str, Any], seen: tuple[str, ...]
) -> Iterator[FieldInfo]:
    if isinstance(node, list):  # union
        for branch in node:
            yield from _walk(branch, prefix, namespace, known, seen)
    elif isinstance(node, str):  # a reference to a named type defined before
        ref = known.get(node) or (known.get(f"{namespace}.{node}") if namespace else None)
        if isinstance(ref, Mapping):
            yield from _walk(ref, prefix, namespace, known, seen)
    elif isinstance(node, Mapping):
        kind = node.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            full = _fullname(node, namespace)
            if full in seen:  # recursive type: stop rather than loop
                return
            known.setdefault(full, node)
            namespace = full.rpartition(".")[0] or None
            if kind in ("record", "error"):
                yield from _fields(node, prefix, namespace, known, (*seen, full))
        elif kind == "array":
            yield from _walk(node.get("items"), prefix, namespace, known, seen)
        elif kind == "map":
            yield from _walk(node.get("values"), prefix, namespace, known, seen)
        elif isinstance(kind, dict | list):
            yield from _walk(kind, prefix, namespace, known, seen)


def _fields(
    record: Mapping[str, Any],
    prefix: str,
    namespace: str | None,
    known: dict[str, Any],
    seen: tuple[str, ...],
) -> Iterator[FieldInfo]:
    for field in record.get("fields") or []:
        if not isinstance(field, Mapping):
            continue
        path = f"{prefix}{field.get('name')}"
        yield FieldInfo(path, classify(field), field.get("data_subject") is True, field.get("type"))
        yield from _walk(field.get("type"), f"{path}.", namespace, known, seen)

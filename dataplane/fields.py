"""Pure helpers over field paths: which are sealed, and projecting a value onto allowed paths."""

from __future__ import annotations

from typing import Any

from exchange import avro_paths

SEALED = frozenset({"sensitive", "secret"})


def sensitive_paths(fields: list[Any]) -> dict[str, Any]:
    """path → declared Avro type of every field the schema classifies sensitive or secret
    (what gets sealed; the sealed schema itself is read with exchange.crypto.sealing)."""
    return {f.path: f.avro_type for f in fields if str(f.classification) in SEALED}


def subject_paths(fields: list[Any]) -> list[str]:
    return [f.path for f in fields if getattr(f, "data_subject", False)]


def get_path(value: dict[str, Any], path: str) -> Any:
    cur: Any = value
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def project(value: dict[str, Any], allowed: frozenset[str], schema: Any) -> dict[str, Any]:
    """Keep only the allowed paths of a value of ``schema`` (fastavro-parsed): at any depth,
    in every array item, map value and union branch (exchange.avro_paths)."""
    root = avro_paths.shape_of(schema).root
    if not isinstance(root, avro_paths.Record):
        return {}
    return avro_paths.project(root, value, allowed)

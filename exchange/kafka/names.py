"""Kafka's rules for topic names that the broker enforces late or not at all."""

from __future__ import annotations

from collections.abc import Iterable


def collision(name: str, existing: Iterable[str]) -> str | None:
    """An existing topic that Kafka would confuse with ``name``, if any.

    Kafka maps '.' to '_' in metric names, so ``health.x.y`` and ``health.x_y`` cannot both
    exist; the broker refuses the second one with a generic error. Same name: not a clash.
    """
    key = name.replace(".", "_")
    return next((t for t in existing if t != name and t.replace(".", "_") == key), None)

"""Kafka topic-name collisions ('.' and '_' are one character to Kafka) (pure)."""

from __future__ import annotations

from exchange.kafka.names import collision


def test_dot_and_underscore_collide() -> None:
    assert collision("health.x.y", ["health.x_y"]) == "health.x_y"
    assert collision("health.x_y", ["other.a", "health.x.y"]) == "health.x.y"
    assert collision("health.a_b.c", ["health.a.b_c"]) == "health.a.b_c"


def test_no_collision() -> None:
    assert collision("health.x.y", []) is None
    assert collision("health.x.y", ["health.x.y"]) is None  # the same name is not a clash
    assert collision("health.x.y", ["health.xy", "health.x-y", "health.x.yz"]) is None

"""Content negotiation of /registry, as Confluent's Jersey resources answer it."""

from __future__ import annotations

import pytest

from gateway.routes.registry import V1, negotiate

SR = "application/vnd.schemaregistry+json"
JSON = "application/json"


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("", V1),
        ("*/*", V1),
        ("application/*", V1),
        (V1, V1),
        (SR, SR),
        (JSON, JSON),
        (f"{JSON}, {SR}", SR),  # server quality: v1 1.0, vnd 0.9, json 0.5
        (f"{V1};q=0.1, {JSON}", JSON),
        (f"{JSON};q=0, {SR}", SR),
        ("text/html, application/json;q=0.2", JSON),
        ("text/html", None),
        ("application/xml, text/*", None),
        (f"{V1};q=0", None),
        (f"{V1};q=nonsense", None),
    ],
)
def test_negotiate(accept: str, chosen: str | None) -> None:
    assert negotiate(accept) == chosen

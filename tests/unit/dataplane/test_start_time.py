"""Subscription start times: RFC 3339 / ISO 8601 to Kafka epoch milliseconds (pure)."""

from __future__ import annotations

import pytest

from dataplane.cursor import start_time_ms
from exchange.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T08:00:00+08:00", 0),
        ("2024-01-01T00:00:00Z", 1_704_067_200_000),
        ("2024-01-01", 1_704_067_200_000),  # no offset: UTC
        ("9999-12-31T23:59:59-14:00", 253_402_351_199_000),
    ],
)
def test_accepted(text: str, ms: int) -> None:
    assert start_time_ms(text) == ms


@pytest.mark.parametrize(
    "text",
    [
        "1960-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999Z",
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC: overflows datetime arithmetic
        "0001-01-01",
        "not a time",
        "+275760-09-13",
        "2024-13-01",
    ],
)
def test_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        start_time_ms(text)
    assert "start" in exc.value.message

"""The officer's filter form: times typed in the browser's zone, denied-only, bad input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exchange.errors import InvalidInput
from gateway.console.routes.audit import filters_from


def test_local_times_use_the_browsers_zone() -> None:
    f = filters_from({"from": "2026-11-30T08:00", "to": "2026-11-30T09:30:15", "tz": "480"})
    assert f.since == datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    assert f.until == datetime(2026, 11, 30, 1, 30, 15, tzinfo=UTC)
    assert filters_from({"from": "2026-11-30T08:00"}).since == datetime(2026, 11, 30, 8, tzinfo=UTC)
    zoned = filters_from({"from": "2026-11-30T08:00+01:00", "tz": "480"})
    assert zoned.since == datetime(2026, 11, 30, 7, tzinfo=UTC)  # its own zone wins


def test_text_filters_and_denied_only() -> None:
    f = filters_from({"type": " schema.* ", "department": "", "denied": "1", "topic": "a.b"})
    assert (f.type, f.department, f.outcome, f.topic) == ("schema.*", None, "denied", "a.b")
    assert filters_from({}).outcome is None


@pytest.mark.parametrize(
    "form",
    [
        {"from": "yesterday"},
        {"from": "2026-11-30T10:00", "to": "2026-11-30T09:00"},
        {"tz": "abc"},
        {"tz": "100000"},
        {"type": "schema*"},
        {"client": "x" * 301},
    ],
)
def test_bad_input_is_refused(form: dict[str, str]) -> None:
    with pytest.raises(InvalidInput):
        filters_from(form)

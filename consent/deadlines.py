"""Working-day arithmetic for response deadlines. Pure."""

from __future__ import annotations

from collections.abc import Set
from datetime import date, datetime, timedelta


def add_working_days(start: datetime, days: int, holidays: Set[date] = frozenset()) -> datetime:
    """``start`` moved forward by ``days`` working days (Mon-Fri, not in ``holidays``)."""
    current = start
    left = days
    while left > 0:
        current += timedelta(days=1)
        if current.weekday() < 5 and current.date() not in holidays:
            left -= 1
    return current

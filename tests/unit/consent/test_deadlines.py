from __future__ import annotations

from datetime import UTC, date, datetime

from consent.deadlines import add_working_days


def test_ten_working_days_skip_weekends() -> None:
    wed = datetime(2026, 11, 25, 9, tzinfo=UTC)
    assert add_working_days(wed, 10) == datetime(2026, 12, 9, 9, tzinfo=UTC)


def test_friday_plus_one_is_monday() -> None:
    fri = datetime(2026, 11, 27, 17, tzinfo=UTC)
    assert add_working_days(fri, 1).date() == date(2026, 11, 30)


def test_holidays_are_skipped() -> None:
    thu = datetime(2026, 12, 31, tzinfo=UTC)
    assert add_working_days(thu, 1, {date(2027, 1, 1)}).date() == date(2027, 1, 4)

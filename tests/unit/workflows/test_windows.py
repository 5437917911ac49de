"""Table-driven tests of the calendar rules in ``workflows.windows``."""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from itertools import pairwise

import pytest

from workflows.windows import (
    RenewalWindow,
    add_months,
    evergreen_name,
    evergreen_shows_window,
    format_month,
    is_business_day,
    is_monthly_run_day,
    is_weekly_run_day,
    next_business_day,
    parse_evergreen_name,
    parse_month,
    renewal_month_for_run,
    upload_date_for_window,
    us_federal_holidays,
    weekly_upload_date_for,
    window_for_day,
    window_for_upload_date,
    window_list_name,
    windows_for_month,
)

EN_DASH = "\u2013"


def _mondays(first: date, last: date) -> list[date]:
    start = first + timedelta(days=(calendar.MONDAY - first.weekday()) % 7)
    return [start + timedelta(weeks=n) for n in range((last - start).days // 7 + 1)]


@pytest.mark.parametrize(
    ("year", "month", "last_day"),
    [(2024, 2, 29), (2025, 2, 28), (2100, 2, 28), (2000, 2, 29), (2026, 4, 30), (2026, 1, 31)],
)
def test_windows_for_month(year: int, month: int, last_day: int) -> None:
    windows = windows_for_month(year, month)
    bounds = [(w.index, w.start_day, w.end_day) for w in windows]
    assert bounds == [(1, 1, 7), (2, 8, 14), (3, 15, 21), (4, 22, last_day)]
    assert windows[-1].end == date(year, month, last_day)
    assert all(w.year == year and w.month == month for w in windows)


def test_windows_cover_every_day_exactly_once() -> None:
    for year in (2023, 2024):
        for month in range(1, 13):
            windows = windows_for_month(year, month)
            days = [d for w in windows for d in range(w.start_day, w.end_day + 1)]
            assert days == list(range(1, calendar.monthrange(year, month)[1] + 1))


@pytest.mark.parametrize(
    ("year", "month", "day", "index", "end_day"),
    [
        (2026, 2, 1, 1, 7),
        (2026, 2, 7, 1, 7),
        (2026, 2, 8, 2, 14),
        (2026, 2, 14, 2, 14),
        (2026, 2, 15, 3, 21),
        (2026, 2, 21, 3, 21),
        (2026, 2, 22, 4, 28),
        (2026, 2, 28, 4, 28),
        (2024, 2, 29, 4, 29),
        (2025, 2, 29, 4, 28),  # a 2024 leap-day purchase renewing in 2025
        (2025, 2, 31, 4, 28),
        (2026, 4, 31, 4, 30),  # the 31st in a 30-day month
        (2026, 1, 31, 4, 31),
    ],
)
def test_window_for_day(year: int, month: int, day: int, index: int, end_day: int) -> None:
    window = window_for_day(year, month, day)
    assert (window.index, window.end_day) == (index, end_day)


@pytest.mark.parametrize(("month", "day"), [(2, 0), (2, 32), (2, -1), (0, 5), (13, 5)])
def test_window_for_day_rejects(month: int, day: int) -> None:
    with pytest.raises(ValueError):
        window_for_day(2026, month, day)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((2026, 2, 4, 22, 31), "covers days 22-28"),
        ((2026, 2, 1, 1, 8), "covers days 1-7"),
        ((2026, 2, 5, 29, 31), "index must be 1..4"),
        ((2026, 13, 1, 1, 7), "month must be 1..12"),
    ],
)
def test_renewal_window_validates(args: tuple[int, int, int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RenewalWindow(*args)


def test_renewal_window_properties() -> None:
    window = RenewalWindow(2024, 2, 4, 22, 29)
    assert (window.start, window.end) == (date(2024, 2, 22), date(2024, 2, 29))
    assert window.first_of_month == date(2024, 2, 1)
    assert window.key == "2024-02-w4"
    assert window.contains(date(2024, 2, 29))
    assert not window.contains(date(2024, 3, 1))
    assert sorted(windows_for_month(2024, 3) + windows_for_month(2024, 2))[0].key == "2024-02-w1"


@pytest.mark.parametrize(
    ("monday", "key"),
    [
        (date(2026, 1, 5), "2026-02-w1"),  # Feb 2
        (date(2026, 1, 12), "2026-02-w2"),  # Feb 9
        (date(2026, 1, 19), "2026-02-w3"),  # Feb 16
        (date(2026, 1, 26), "2026-02-w4"),  # Feb 23
        (date(2026, 2, 2), "2026-03-w1"),  # Mar 2
        (date(2026, 2, 23), "2026-03-w4"),  # Mar 23
        (date(2026, 3, 2), "2026-03-w4"),  # Mar 30: second Monday of the same last window
        (date(2026, 3, 9), "2026-04-w1"),  # Apr 6
        (date(2024, 2, 5), "2024-03-w1"),  # Mar 4
        (date(2024, 1, 29), "2024-02-w4"),  # Feb 26, leap February 22-29
        (date(2025, 12, 1), "2025-12-w4"),  # Dec 29
        (date(2025, 12, 8), "2026-01-w1"),  # Jan 5, across the year end
    ],
)
def test_window_for_upload_date(monday: date, key: str) -> None:
    window = window_for_upload_date(monday)
    assert window.key == key
    assert window.contains(monday + timedelta(days=28))


@pytest.mark.parametrize(
    "day", [date(2026, 1, 6), date(2026, 1, 4), date(2026, 1, 10), date(2026, 5, 26)]
)
def test_window_for_upload_date_requires_monday(day: date) -> None:
    with pytest.raises(ValueError, match="must be a Monday"):
        window_for_upload_date(day)


def test_weekly_windows_never_skip_and_keep_lead_time() -> None:
    mondays = _mondays(date(2023, 11, 1), date(2031, 3, 1))
    windows = [window_for_upload_date(monday) for monday in mondays]
    first_upload: dict[RenewalWindow, date] = {}
    for monday, window in zip(mondays, windows, strict=True):
        assert window.contains(monday + timedelta(days=28))
        first_upload.setdefault(window, monday)
    for window, monday in first_upload.items():  # later Mondays of a window are no-ops
        assert 22 <= (window.start - monday).days <= 28 <= (window.end - monday).days <= 37
    for previous, current in pairwise(windows):
        expected_next = (
            windows_for_month(*add_months(previous.year, previous.month, 1))[0]
            if previous.index == 4
            else windows_for_month(previous.year, previous.month)[previous.index]
        )
        assert current in (previous, expected_next)
    seen = set(windows)
    for year in range(2024, 2031):
        for month in range(1, 13):
            assert set(windows_for_month(year, month)) <= seen


def test_upload_date_for_window_is_the_first_monday() -> None:
    for year in (2024, 2025, 2026):
        for month in range(1, 13):
            for window in windows_for_month(year, month):
                monday = upload_date_for_window(window)
                assert monday.weekday() == calendar.MONDAY
                assert window_for_upload_date(monday) == window
                assert window_for_upload_date(monday - timedelta(weeks=1)) != window


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (RenewalWindow(2026, 2, 1, 1, 7), "February 1st - 7th renewals"),
        (RenewalWindow(2026, 2, 2, 8, 14), "February 8th - 14th renewals"),
        (RenewalWindow(2026, 2, 3, 15, 21), "February 15th - 21st renewals"),
        (RenewalWindow(2026, 2, 4, 22, 28), "February 22nd - 28th renewals"),
        (RenewalWindow(2024, 2, 4, 22, 29), "February 22nd - 29th renewals"),
        (RenewalWindow(2026, 4, 4, 22, 30), "April 22nd - 30th renewals"),
        (RenewalWindow(2026, 1, 4, 22, 31), "January 22nd - 31st renewals"),
    ],
)
def test_window_list_name(window: RenewalWindow, expected: str) -> None:
    assert window_list_name(window) == expected


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (RenewalWindow(2025, 10, 1, 1, 7), f"Evergreen, Last Upload: October 1{EN_DASH}7"),
        (RenewalWindow(2025, 10, 4, 22, 31), f"Evergreen, Last Upload: October 22{EN_DASH}31"),
        (RenewalWindow(2024, 2, 4, 22, 29), f"Evergreen, Last Upload: February 22{EN_DASH}29"),
    ],
)
def test_evergreen_name(window: RenewalWindow, expected: str) -> None:
    assert evergreen_name(window) == expected
    assert evergreen_shows_window(expected, window)


def test_evergreen_name_round_trip() -> None:
    for year in (2024, 2025):
        for month in range(1, 13):
            for window in windows_for_month(year, month):
                expected = (window.month, window.start_day, window.end_day)
                assert parse_evergreen_name(evergreen_name(window)) == expected
                hnw = evergreen_name(window, prefix="Evergreen HNW")
                assert parse_evergreen_name(hnw) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (f"Evergreen, Last Upload: October 1{EN_DASH}7", (10, 1, 7)),
        ("Evergreen, Last Upload: October 1-7", (10, 1, 7)),
        ("Evergreen, Last Upload: October 1 - 7", (10, 1, 7)),
        ("  Evergreen ,  Last  Upload :  October   8\u201414  ", (10, 8, 14)),
        ("evergreen, last upload: october 15-21", (10, 15, 21)),
        ("Evergreen, Last Upload: Oct 22-31", (10, 22, 31)),
        ("Evergreen, Last Upload: Sept. 1-7", (9, 1, 7)),
        ("Evergreen, Last Upload: February 22nd - 29th", (2, 22, 29)),
        ("Evergreen HNW, Last Upload: March 1-7", (3, 1, 7)),
        ("Acme Evergreen, Last Upload: March 1-7", (3, 1, 7)),
        ("Evergreen, Last Upload: Octember 1-7", None),
        ("Evergreen, Last Upload: October 7-1", None),
        ("Evergreen, Last Upload: October 0-7", None),
        ("Evergreen, Last Upload: October 22-32", None),
        ("Evergreen, Last Upload: October 1", None),
        ("Evergreen, Last Upload: October 1-7 (copy)", None),
        ("Evergreen Last Upload October 1-7", None),
        ("Renewals, Last Upload: October 1-7", None),
        ("October 1-7", None),
        ("", None),
    ],
)
def test_parse_evergreen_name(name: str, expected: tuple[int, int, int] | None) -> None:
    assert parse_evergreen_name(name) == expected


@pytest.mark.parametrize(
    ("name", "window", "expected"),
    [
        ("Evergreen, Last Upload: March 1-7", RenewalWindow(2026, 3, 1, 1, 7), True),
        ("Evergreen, Last Upload: March 1-7", RenewalWindow(2026, 3, 2, 8, 14), False),
        ("Evergreen, Last Upload: April 1-7", RenewalWindow(2026, 3, 1, 1, 7), False),
        ("Evergreen, Last Upload: February 22-29", RenewalWindow(2026, 2, 4, 22, 28), False),
        ("Evergreen", RenewalWindow(2026, 3, 1, 1, 7), False),
    ],
)
def test_evergreen_shows_window(name: str, window: RenewalWindow, expected: bool) -> None:
    assert evergreen_shows_window(name, window) is expected


@pytest.mark.parametrize(
    ("run_date", "expected"),
    [
        (date(2026, 1, 15), (2026, 3)),
        (date(2025, 10, 15), (2025, 12)),
        (date(2025, 11, 15), (2026, 1)),
        (date(2025, 12, 15), (2026, 2)),
        (date(2025, 12, 31), (2026, 2)),
        (date(2024, 2, 29), (2024, 4)),
    ],
)
def test_renewal_month_for_run(run_date: date, expected: tuple[int, int]) -> None:
    assert renewal_month_for_run(run_date) == expected


@pytest.mark.parametrize(
    ("year", "month", "months", "expected"),
    [
        (2026, 1, 0, (2026, 1)),
        (2026, 12, 1, (2027, 1)),
        (2026, 1, -1, (2025, 12)),
        (2026, 6, 24, (2028, 6)),
        (2026, 6, -18, (2024, 12)),
    ],
)
def test_add_months(year: int, month: int, months: int, expected: tuple[int, int]) -> None:
    assert add_months(year, month, months) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2026-03", (2026, 3)), ("1999-12", (1999, 12)), (" 2026-01 ", (2026, 1))],
)
def test_parse_month(text: str, expected: tuple[int, int]) -> None:
    assert parse_month(text) == expected
    assert format_month(*expected) == text.strip()


@pytest.mark.parametrize(
    "text", ["2026-3", "2026-13", "2026-00", "03-2026", "2026/03", "202603", "2026-03-01", ""]
)
def test_parse_month_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        parse_month(text)


def test_us_federal_holidays_2026() -> None:
    assert us_federal_holidays(2026) == {
        date(2026, 1, 1),
        date(2026, 1, 19),  # Martin Luther King Jr. Day
        date(2026, 2, 16),  # Washington's Birthday
        date(2026, 5, 25),  # Memorial Day
        date(2026, 6, 19),  # Juneteenth
        date(2026, 7, 3),  # Independence Day observed (July 4 is a Saturday)
        date(2026, 7, 4),
        date(2026, 9, 7),  # Labor Day
        date(2026, 10, 12),  # Columbus Day
        date(2026, 11, 11),
        date(2026, 11, 26),  # Thanksgiving
        date(2026, 12, 25),
    }


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2021, 12, 31), True),  # observed for Saturday Jan 1 2022
        (date(2022, 12, 26), True),  # Christmas on Sunday -> Monday
        (date(2022, 6, 20), True),  # Juneteenth on Sunday -> Monday
        (date(2023, 1, 2), True),  # New Year on Sunday -> Monday
        (date(2027, 12, 31), True),  # observed for Saturday Jan 1 2028
        (date(2020, 6, 19), False),  # before Juneteenth became a federal holiday
        (date(2022, 12, 30), False),
        (date(2024, 11, 28), True),  # Thanksgiving
        (date(2024, 5, 27), True),  # Memorial Day
        (date(2024, 5, 20), False),
    ],
)
def test_holiday_membership(day: date, expected: bool) -> None:
    assert (day in us_federal_holidays(day.year)) is expected


def test_us_federal_holidays_returns_a_fresh_set() -> None:
    holidays = us_federal_holidays(2026)
    holidays.clear()
    assert date(2026, 5, 25) in us_federal_holidays(2026)


@pytest.mark.parametrize(
    ("day", "inclusive", "expected"),
    [
        (date(2026, 6, 3), True, date(2026, 6, 3)),  # ordinary Wednesday
        (date(2026, 6, 3), False, date(2026, 6, 4)),
        (date(2026, 6, 5), False, date(2026, 6, 8)),  # Friday -> Monday
        (date(2026, 5, 23), True, date(2026, 5, 26)),  # Saturday before Memorial Day
        (date(2026, 5, 25), True, date(2026, 5, 26)),  # Memorial Day
        (date(2026, 9, 7), True, date(2026, 9, 8)),  # Labor Day
        (date(2026, 7, 3), True, date(2026, 7, 6)),  # observed Independence Day
        (date(2026, 11, 26), True, date(2026, 11, 27)),  # Thanksgiving
        (date(2021, 12, 31), True, date(2022, 1, 3)),  # observed New Year, across the year end
        (date(2026, 12, 25), True, date(2026, 12, 28)),
    ],
)
def test_next_business_day(day: date, inclusive: bool, expected: date) -> None:
    assert next_business_day(day, inclusive=inclusive) == expected
    assert is_business_day(expected)


@pytest.mark.parametrize(
    ("local_date", "expected"),
    [
        (date(2026, 6, 1), date(2026, 6, 1)),  # ordinary Monday
        (date(2026, 6, 2), None),
        (date(2026, 5, 25), None),  # Memorial Day: no run on the Monday...
        (date(2026, 5, 26), date(2026, 5, 25)),  # ...the Tuesday runs the Monday's window
        (date(2026, 9, 7), None),  # Labor Day
        (date(2026, 9, 8), date(2026, 9, 7)),
        (date(2026, 1, 19), None),  # Martin Luther King Jr. Day
        (date(2026, 1, 20), date(2026, 1, 19)),
        (date(2026, 7, 6), date(2026, 7, 6)),  # the holiday was on the Friday before
        (date(2026, 5, 31), None),  # Sunday
        (date(2026, 5, 30), None),  # Saturday
    ],
)
def test_weekly_upload_date_for(local_date: date, expected: date | None) -> None:
    assert weekly_upload_date_for(local_date) == expected
    assert is_weekly_run_day(local_date) is (expected is not None)


def test_exactly_one_weekly_run_per_week() -> None:
    for monday in _mondays(date(2024, 1, 1), date(2030, 12, 31)):
        week = [monday + timedelta(days=n) for n in range(7)]
        runs = [(day, weekly_upload_date_for(day)) for day in week if is_weekly_run_day(day)]
        assert len(runs) == 1
        run_day, upload_date = runs[0]
        assert upload_date == monday
        assert run_day.weekday() in (calendar.MONDAY, calendar.TUESDAY)
        assert (run_day == monday) is (monday not in us_federal_holidays(monday.year))


@pytest.mark.parametrize(
    ("local_date", "expected"),
    [(date(2026, 1, 15), True), (date(2026, 2, 14), False), (date(2026, 2, 16), False)],
)
def test_is_monthly_run_day(local_date: date, expected: bool) -> None:
    assert is_monthly_run_day(local_date) is expected

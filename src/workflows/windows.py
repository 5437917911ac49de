"""Calendar rules: renewal months, weekly renewal windows, their names, and run days.

PT1-PT3 run on the 15th for the renewal month two months ahead; PT4 splits that month into
four windows by purchase day (1-7, 8-14, 15-21, 22-end); PT5 runs every Monday (or the next
business day after a federal holiday) and adds the window that starts four weeks later. All of
it is plain date arithmetic, kept here without I/O so it can be tested exhaustively.

Reconciling "window = upload Monday M + 28 .. M + 34" with the purchase-day buckets: the window
of upload day M is **the bucket containing M + 28**. Since 28 days is exactly four weeks, M + 28
is itself a Monday, and every bucket contains at least one Monday, so consecutive Mondays never
skip a bucket. The last bucket (22-end, 7 to 10 days) can contain two Mondays; the second
Monday then maps to the same window again, and PT5 sees the evergreen name already showing it
and does nothing. A window's leads are therefore uploaded 22 to 37 days before their renewal
dates (28 to 34 nominally).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from typing import Final

from workflows.formatting import ordinal

SCHEDULE_TIMEZONE: Final = "America/Chicago"
"""Both schedules fire at 09:00 in this zone."""
MONTHLY_RUN_DAY: Final = 15
"""PT1 -> PT2 -> PT3 run on this day of every month."""
RENEWAL_LEAD_MONTHS: Final = 2
"""The monthly run pulls the renewal month this many months ahead."""
UPLOAD_LEAD_DAYS: Final = 28
"""A window starts (nominally) this many days after its upload Monday."""

_BUCKET_STARTS: Final = (1, 8, 15, 22)
_MONTH_RE: Final = re.compile(r"(\d{4})-(\d{2})")
_MONTH_NUMBER: Final = {
    **{name.casefold(): number for number, name in enumerate(calendar.month_name) if number},
    **{name.casefold(): number for number, name in enumerate(calendar.month_abbr) if number},
    "sept": 9,
}
_EVERGREEN_RE: Final = re.compile(
    r"""\s*(?P<prefix>[^,]*?evergreen[^,]*?)\s*,\s*last\s+upload\s*:\s*
    (?P<month>[a-z]+)\.?\s+
    (?P<start>\d{1,2})(?:st|nd|rd|th)?\s*[-\u2013\u2014]\s*(?P<end>\d{1,2})(?:st|nd|rd|th)?\s*""",
    re.IGNORECASE | re.VERBOSE,
)


@dataclass(frozen=True, slots=True, order=True)
class RenewalWindow:
    """One of a month's four renewal windows: purchase days ``start_day``..``end_day``.

    >>> w = window_for_day(2024, 2, 23)
    >>> (w.index, w.start, w.end)
    (4, datetime.date(2024, 2, 22), datetime.date(2024, 2, 29))
    """

    year: int
    month: int
    index: int
    start_day: int
    end_day: int

    def __post_init__(self) -> None:
        expected = _bucket_bounds(self.year, self.month, self.index)
        if (self.start_day, self.end_day) != expected:
            raise ValueError(
                f"window {self.index} of {self.year}-{self.month:02d} covers days "
                f"{expected[0]}-{expected[1]}, not {self.start_day}-{self.end_day}"
            )

    @property
    def first_of_month(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def start(self) -> date:
        return date(self.year, self.month, self.start_day)

    @property
    def end(self) -> date:
        return date(self.year, self.month, self.end_day)

    @property
    def key(self) -> str:
        """Stable identifier, e.g. ``"2026-02-w1"``."""
        return f"{self.year:04d}-{self.month:02d}-w{self.index}"

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end


def _bucket_bounds(year: int, month: int, index: int) -> tuple[int, int]:
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 1..12, got {month}")
    if not 1 <= index <= 4:
        raise ValueError(f"window index must be 1..4, got {index}")
    last = calendar.monthrange(year, month)[1]
    start = _BUCKET_STARTS[index - 1]
    return start, (last if index == 4 else start + 6)


def windows_for_month(year: int, month: int) -> list[RenewalWindow]:
    """The four windows of a month; the fourth runs from the 22nd to the month's last day."""
    return [
        RenewalWindow(year, month, index, *_bucket_bounds(year, month, index))
        for index in range(1, 5)
    ]


def window_for_day(year: int, month: int, day: int) -> RenewalWindow:
    """The window holding purchase day ``day`` (1..31) in ``year``/``month``.

    A day past the month's end (a 29 February purchase renewing in 2025, a 31st in a 30-day
    month) belongs to the last window, which ends on the month's last day.
    """
    if not 1 <= day <= 31:
        raise ValueError(f"day of month must be 1..31, got {day}")
    index = min((day - 1) // 7 + 1, 4)
    return RenewalWindow(year, month, index, *_bucket_bounds(year, month, index))


def window_for_upload_date(monday: date) -> RenewalWindow:
    """The window PT5 adds on upload day ``monday``: the bucket containing ``monday + 28``.

    >>> window_list_name(window_for_upload_date(date(2026, 1, 5)))
    'February 1st - 7th renewals'
    """
    if monday.weekday() != calendar.MONDAY:
        raise ValueError(f"upload date must be a Monday, got {monday:%A} {monday.isoformat()}")
    target = monday + timedelta(days=UPLOAD_LEAD_DAYS)
    return window_for_day(target.year, target.month, target.day)


def upload_date_for_window(window: RenewalWindow) -> date:
    """The first upload Monday whose window is ``window`` (inverse of the function above)."""
    offset = (calendar.MONDAY - window.start.weekday()) % 7
    return window.start + timedelta(days=offset - UPLOAD_LEAD_DAYS)


def window_list_name(window: RenewalWindow) -> str:
    """PT4 lead-list name, e.g. ``"February 22nd - 28th renewals"``."""
    month = calendar.month_name[window.month]
    return f"{month} {ordinal(window.start_day)} - {ordinal(window.end_day)} renewals"


def evergreen_name(window: RenewalWindow, *, prefix: str = "Evergreen") -> str:
    """PT5 campaign name, e.g. ``"Evergreen, Last Upload: October 1\u20137"`` (EN DASH).

    ``prefix`` allows a twin campaign (e.g. ``"Evergreen HNW"``); it must contain "Evergreen"
    and no comma to stay parseable.
    """
    month = calendar.month_name[window.month]
    return f"{prefix}, Last Upload: {month} {window.start_day}\u2013{window.end_day}"


def parse_evergreen_name(name: str) -> tuple[int, int, int] | None:
    """``(month, start_day, end_day)`` from an evergreen campaign name, or ``None``.

    Tolerates hyphen/en dash/em dash, extra spaces, any letter case, month abbreviations and
    ordinal suffixes; requires 1 <= start <= end <= 31.

    >>> parse_evergreen_name("Evergreen,  Last Upload: oct 22 - 31")
    (10, 22, 31)
    """
    match = _EVERGREEN_RE.fullmatch(name)
    if match is None:
        return None
    month = _MONTH_NUMBER.get(match["month"].casefold())
    start, end = int(match["start"]), int(match["end"])
    if month is None or not 1 <= start <= end <= 31:
        return None
    return month, start, end


def evergreen_shows_window(name: str, window: RenewalWindow) -> bool:
    """True when the campaign name already records ``window`` (PT5 then has nothing to do).

    Names carry no year: a name last updated exactly a year ago would also match, which the
    weekly cadence makes impossible in practice.
    """
    return parse_evergreen_name(name) == (window.month, window.start_day, window.end_day)


def evergreen_shows_later_window(name: str, window: RenewalWindow) -> bool:
    """True when the campaign name records a window that starts *after* ``window``: PT5 for
    ``window`` came late, and renaming would move the campaign's record backwards.

    Names carry no year: the window named is taken in the year that puts it nearest to
    ``window`` (PT5 runs weekly: the two are weeks apart, never half a year).

    >>> week1 = window_for_day(2026, 12, 3)
    >>> evergreen_shows_later_window("Evergreen, Last Upload: December 8-14", week1)
    True
    >>> evergreen_shows_later_window("Evergreen, Last Upload: November 22-30", week1)
    False
    >>> evergreen_shows_later_window("Evergreen, Last Upload: December 22-31",
    ...                              window_for_day(2027, 1, 3))
    False
    """
    parsed = parse_evergreen_name(name)
    if parsed is None:
        return False
    month, start_day, _ = parsed
    candidates = []
    for year in (window.year - 1, window.year, window.year + 1):
        try:
            candidates.append(date(year, month, start_day))
        except ValueError:  # e.g. February 30 in the name
            continue
    if not candidates:
        return False
    shown = min(candidates, key=lambda day: abs((day - window.start).days))
    return shown > window.start


def add_months(year: int, month: int, months: int) -> tuple[int, int]:
    """``(2025, 11) + 2`` -> ``(2026, 1)``."""
    zero_based = year * 12 + (month - 1) + months
    return zero_based // 12, zero_based % 12 + 1


def renewal_month_for_run(run_date: date) -> tuple[int, int]:
    """Renewal month pulled by the monthly run on ``run_date``: two months ahead.

    >>> renewal_month_for_run(date(2025, 11, 15))
    (2026, 1)
    """
    return add_months(run_date.year, run_date.month, RENEWAL_LEAD_MONTHS)


def parse_month(text: str) -> tuple[int, int]:
    """``"2026-03"`` -> ``(2026, 3)``; ``ValueError`` naming the format otherwise."""
    match = _MONTH_RE.fullmatch(text.strip())
    if match is None or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"expected a month as YYYY-MM (e.g. 2026-03), got {text!r}")
    return int(match[1]), int(match[2])


def format_month(year: int, month: int) -> str:
    """``(2026, 3)`` -> ``"2026-03"`` (the inverse of :func:`parse_month`)."""
    return f"{year:04d}-{month:02d}"


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The ``n``-th ``weekday`` of the month; ``n = -1`` is the last one."""
    if n < 0:
        last = date(year, month, calendar.monthrange(year, month)[1])
        return last - timedelta(days=(last.weekday() - weekday) % 7)
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _observed(holiday: date) -> date:
    """Saturday holidays are observed on Friday, Sunday ones on Monday (5 U.S.C. 6103)."""
    if holiday.weekday() == calendar.SATURDAY:
        return holiday - timedelta(days=1)
    if holiday.weekday() == calendar.SUNDAY:
        return holiday + timedelta(days=1)
    return holiday


@cache
def _holidays(year: int) -> frozenset[date]:
    def fixed(y: int) -> list[date]:
        days = [date(y, 1, 1), date(y, 7, 4), date(y, 11, 11), date(y, 12, 25)]
        if y >= 2021:
            days.append(date(y, 6, 19))  # Juneteenth, a federal holiday since 2021
        return days

    actual = fixed(year)
    floating = [
        _nth_weekday(year, 1, calendar.MONDAY, 3),  # Martin Luther King Jr. Day
        _nth_weekday(year, 2, calendar.MONDAY, 3),  # Washington's Birthday
        _nth_weekday(year, 5, calendar.MONDAY, -1),  # Memorial Day
        _nth_weekday(year, 9, calendar.MONDAY, 1),  # Labor Day
        _nth_weekday(year, 10, calendar.MONDAY, 2),  # Columbus Day
        _nth_weekday(year, 11, calendar.THURSDAY, 4),  # Thanksgiving
    ]
    observed = [_observed(day) for day in actual + fixed(year + 1)]
    return frozenset(actual + floating + [day for day in observed if day.year == year])


def us_federal_holidays(year: int) -> set[date]:
    """U.S. federal holidays in ``year``: the legal dates plus weekday observed dates.

    A Saturday holiday is observed the Friday before and a Sunday one the Monday after; when
    1 January falls on a Saturday, the observed day is 31 December of the previous year (so it
    is listed under that year). Inauguration Day is not included.
    """
    return set(_holidays(year))


def is_business_day(day: date) -> bool:
    """Monday to Friday and not a (legal or observed) federal holiday."""
    return day.weekday() < calendar.SATURDAY and day not in _holidays(day.year)


def next_business_day(day: date, *, inclusive: bool = True) -> date:
    """First business day on or after ``day`` (strictly after when ``inclusive=False``).

    >>> next_business_day(date(2026, 5, 25))  # Memorial Day
    datetime.date(2026, 5, 26)
    """
    candidate = day if inclusive else day + timedelta(days=1)
    while not is_business_day(candidate):
        candidate += timedelta(days=1)
    return candidate


def weekly_upload_date_for(local_date: date) -> date | None:
    """The upload Monday (the window key) whose weekly run falls on ``local_date``, or ``None``.

    The run is on the Monday, or on the next business day when that Monday is a holiday;
    the upload date stays the Monday, so the window is unchanged.

    >>> weekly_upload_date_for(date(2026, 5, 26))  # Tuesday after Memorial Day
    datetime.date(2026, 5, 25)
    """
    monday = local_date - timedelta(days=local_date.weekday())
    return monday if next_business_day(monday) == local_date else None


def is_weekly_run_day(local_date: date) -> bool:
    """True when PT5 should run on ``local_date`` (a date in America/Chicago)."""
    return weekly_upload_date_for(local_date) is not None


def is_monthly_run_day(local_date: date) -> bool:
    """True on the 15th (America/Chicago), when PT1 -> PT2 -> PT3 run; holidays do not move it."""
    return local_date.day == MONTHLY_RUN_DAY

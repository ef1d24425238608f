"""Report periods in local China time (UTC+8, no daylight saving), as epoch-ms ranges.

A day, an ISO week (Monday first), a month or a year, written `2026-11-05`,
`2026-W45`, `2026-11` or `2026`. Pure: no clock, no database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Final, Literal

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 60 * MINUTE_MS
DAY_MS: Final = 24 * HOUR_MS
LOCAL_OFFSET_MS: Final = 8 * HOUR_MS  # China Standard Time
LOCAL_TZ: Final = timezone(timedelta(milliseconds=LOCAL_OFFSET_MS))
PeriodKind = Literal["day", "week", "month", "year"]
PERIOD_KINDS: Final[tuple[PeriodKind, ...]] = ("day", "week", "month", "year")
MIN_YEAR: Final = 2000
MAX_YEAR: Final = 2999

_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")


class PeriodError(ValueError):
    """A period that cannot be read. `code` is stable (problem responses, the CLI)."""

    code = "bad_period"


@dataclass(frozen=True, slots=True)
class Period:
    kind: PeriodKind
    label: str  # 2026, 2026-11, 2026-W45, 2026-11-05
    start_ms: int  # inclusive: local midnight of the first day
    end_ms: int  # exclusive

    @property
    def days(self) -> int:
        return (self.end_ms - self.start_ms) // DAY_MS

    def day_starts(self) -> list[int]:
        return list(range(self.start_ms, self.end_ms, DAY_MS))


def local_midnight_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=LOCAL_TZ).timestamp() * 1000)


def local_date(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, LOCAL_TZ).date()


def day_start_ms(ms: int) -> int:
    """Epoch ms of the local midnight on or before `ms`."""
    return (ms + LOCAL_OFFSET_MS) // DAY_MS * DAY_MS - LOCAL_OFFSET_MS


def hour_start_ms(ms: int) -> int:
    """Epoch ms of the local hour `ms` falls in (UTC+8 hours start with UTC hours)."""
    return ms // HOUR_MS * HOUR_MS


def local_hour(ms: int) -> int:
    """0..23."""
    return (ms + LOCAL_OFFSET_MS) // HOUR_MS % 24


def local_weekday(ms: int) -> int:
    """0 Monday .. 6 Sunday (1970-01-01 was a Thursday)."""
    return ((ms + LOCAL_OFFSET_MS) // DAY_MS + 3) % 7


def parse_period(kind: str, value: str) -> Period:
    """The period `value` of `kind`; `PeriodError` with a message for people."""
    text = value.strip()
    try:
        if kind == "month":
            return month(text)
        if kind == "week":
            return week(text)
        if kind == "day":
            return day(text)
        if kind == "year":
            return year(text)
    except ValueError as err:
        raise PeriodError(f"{kind} {value!r}: {err}") from err
    raise PeriodError(f"unknown period kind {kind!r}: use day, week, month or year")


def year(text: str) -> Period:
    m = _YEAR.match(text)
    if m is None:
        raise ValueError("write a year as YYYY")
    the_year = _year(m.group(1))
    start = local_midnight_ms(date(the_year, 1, 1))
    return Period("year", f"{the_year:04d}", start, local_midnight_ms(date(the_year + 1, 1, 1)))


def month(text: str) -> Period:
    m = _MONTH.match(text)
    if m is None:
        raise ValueError("write a month as YYYY-MM")
    year, mon = _year(m.group(1)), int(m.group(2))
    if not 1 <= mon <= 12:
        raise ValueError("the month must be 01..12")
    first = date(year, mon, 1)
    after = date(year + 1, 1, 1) if mon == 12 else date(year, mon + 1, 1)
    return Period(
        "month", f"{year:04d}-{mon:02d}", local_midnight_ms(first), local_midnight_ms(after)
    )


def week(text: str) -> Period:
    m = _WEEK.match(text)
    if m is None:
        raise ValueError("write an ISO week as YYYY-Www")
    year, num = _year(m.group(1)), int(m.group(2))
    monday = date.fromisocalendar(year, num, 1)  # ValueError for week 00 or 54
    start = local_midnight_ms(monday)
    return Period("week", f"{year:04d}-W{num:02d}", start, start + 7 * DAY_MS)


def day(text: str) -> Period:
    m = _DAY.match(text)
    if m is None:
        raise ValueError("write a day as YYYY-MM-DD")
    the_day = date(_year(m.group(1)), int(m.group(2)), int(m.group(3)))
    start = local_midnight_ms(the_day)
    return Period("day", the_day.isoformat(), start, start + DAY_MS)


def _year(text: str) -> int:
    year = int(text)
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"the year must be {MIN_YEAR}..{MAX_YEAR}")
    return year


def period_of(kind: PeriodKind, ms: int) -> Period:
    """The period of `kind` that contains the instant `ms`."""
    d = local_date(ms)
    if kind == "year":
        return year(f"{d.year:04d}")
    if kind == "month":
        return month(f"{d.year:04d}-{d.month:02d}")
    if kind == "week":
        iso = d.isocalendar()
        return week(f"{iso.year:04d}-W{iso.week:02d}")
    return day(d.isoformat())

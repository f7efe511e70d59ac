"""Business days (SLAs are counted in them) and calendar months (revalidation intervals)."""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta
from typing import TypeVar

Day = TypeVar("Day", bound=date)  # a date, or a datetime (which keeps its time of day)


def add_business_days(start: datetime, days: int, holidays: frozenset[date] = frozenset()) -> datetime:
    """``start`` moved forward by ``days`` working days (Monday to Friday, not ``holidays``),
    keeping its time of day."""
    moment = start
    while days > 0:
        moment += timedelta(days=1)
        if moment.weekday() < 5 and moment.date() not in holidays:
            days -= 1
    return moment


def add_months(start: Day, months: int) -> Day:
    """``start`` plus ``months`` calendar months; the 31st becomes the month's last day."""
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    return start.replace(year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1]))

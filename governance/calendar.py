"""Business days: SLAs are counted in them."""

from __future__ import annotations

from datetime import date, datetime, timedelta


def add_business_days(start: datetime, days: int, holidays: frozenset[date] = frozenset()) -> datetime:
    """``start`` moved forward by ``days`` working days (Monday to Friday, not ``holidays``),
    keeping its time of day."""
    moment = start
    while days > 0:
        moment += timedelta(days=1)
        if moment.weekday() < 5 and moment.date() not in holidays:
            days -= 1
    return moment

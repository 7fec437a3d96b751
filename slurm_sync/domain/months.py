"""Billing months: which months to report, and each month's time window.

A billing month is a calendar month in the site's time zone (default UTC). Its window is
half-open, ``[first day 00:00, first day of the next month 00:00)`` as aware datetimes in that
zone, so the first and the last day are counted in full and a job running across midnight of
the 1st is split exactly at the boundary with nothing counted twice.
"""
from __future__ import annotations

from datetime import datetime, timezone, tzinfo
from typing import List, Tuple, Union
from zoneinfo import ZoneInfo

UTC = timezone.utc

TzLike = Union[tzinfo, str, None]


def resolve_tz(tz: TzLike) -> tzinfo:
    """A tzinfo from a zone name ("Europe/Tallinn"), a tzinfo, or None (UTC)."""
    if tz is None:
        return UTC
    if isinstance(tz, str):
        return UTC if tz.upper() == "UTC" else ZoneInfo(tz)
    return tz


def month_window(year: int, month: int, tz: TzLike = None) -> Tuple[datetime, datetime]:
    """``(start, end)`` of a billing month: aware datetimes in ``tz``, end exclusive."""
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 1..12, got {month!r}")
    zone = resolve_tz(tz)
    next_year, next_month = (year + 1, 1) if month == 12 else (year, month + 1)
    return datetime(year, month, 1, tzinfo=zone), datetime(next_year, next_month, 1, tzinfo=zone)


def month_of(moment: datetime, tz: TzLike = None) -> Tuple[int, int]:
    """The (year, month) a moment falls in, in the billing time zone."""
    local = aware(moment).astimezone(resolve_tz(tz))
    return local.year, local.month


def months_to_report(now: datetime, closing_day: int = 3, tz: TzLike = None) -> List[Tuple[int, int]]:
    """Billing months to (re)report at ``now``, oldest first.

    The current month always. The previous month too on days 1..``closing_day`` of the
    current month (inclusive, in ``tz``): jobs that ended late on the last day and rows
    slurmdbd received late still get reported before the month is closed. ``closing_day=0``
    never re-reports the previous month.
    """
    if closing_day < 0:
        raise ValueError(f"closing_day must not be negative, got {closing_day!r}")
    local = aware(now).astimezone(resolve_tz(tz))
    current = (local.year, local.month)
    if local.day <= closing_day:
        previous = (local.year - 1, 12) if local.month == 1 else (local.year, local.month - 1)
        return [previous, current]
    return [current]


def aware(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC: SLURM is read with TZ=UTC throughout."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

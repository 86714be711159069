"""Periods and scope: what every analytics query is asked for, checked in one place.

A period is a range of UTC calendar days with both ends inclusive, as people
say it ("June 1 to June 30"); queries need a half-open range of instants
(``created_at >= lower AND created_at < upper``), so the conversion and its
errors live here rather than in each query. The scope (one tenant, or every
tenant for operators) becomes one SQL condition the same way.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..errors import ValidationError

__all__ = ["MAX_RANGE_DAYS", "day_range", "month_range", "parse_day", "previous_period", "tenant_scope"]

MAX_RANGE_DAYS = 3660  # for series with one row per day; totals and event pages take any range


def parse_day(value: object, field: str) -> date:
    """A UTC calendar day from a ``date`` or a ``YYYY-MM-DD`` string."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValidationError(f"{field} must be a date as YYYY-MM-DD", details={"field": field, "value": str(value)[:40]})


def day_range(start: object, end: object, *, max_days: int | None = MAX_RANGE_DAYS) -> tuple[datetime, datetime]:
    """[start 00:00, end+1 00:00) in UTC; ``start`` after ``end`` is a VALIDATION_ERROR.

    ``max_days=None`` for queries whose cost does not grow with the number of
    days (a filtered scan), so that "all time" can be asked as 2020-01-01..2099-12-31.
    """
    first, last = parse_day(start, "from"), parse_day(end, "to")
    if first > last:
        raise ValidationError("'from' must not be after 'to'", details={"from": str(first), "to": str(last)})
    if max_days is not None and (last - first).days > max_days:
        raise ValidationError(f"a range spans at most {max_days} days", details={"from": str(first), "to": str(last)})
    lower = datetime(first.year, first.month, first.day, tzinfo=UTC)
    upper = (datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1) if last < date.max
             else datetime.max.replace(tzinfo=UTC))  # 9999-12-31 has no next day
    return lower, upper


def month_range(month: object) -> tuple[date, date]:
    """First and last day of a ``YYYY-MM`` calendar month (invoices are monthly)."""
    if isinstance(month, str):
        try:
            first = date.fromisoformat(month.strip() + "-01")
        except ValueError:
            first = None
        if first is not None and len(month.strip()) == 7:
            if (first.year, first.month) == (date.max.year, date.max.month):
                return first, date.max  # 9999-12 has no following month to count back from
            year, mon = divmod(first.year * 12 + first.month, 12)
            return first, date(year, mon + 1, 1) - timedelta(days=1)
    raise ValidationError("month must be given as YYYY-MM", details={"field": "month", "value": str(month)[:40]})


def previous_period(start: object, end: object) -> tuple[date, date]:
    """The period of equal length that ends the day before ``start``: what KPIs are compared with."""
    lower, upper = day_range(start, end)
    length = upper - lower
    return (lower - length).date(), (lower - timedelta(days=1)).date()


def tenant_scope(tenant_id: str | None) -> tuple[str, list[Any]]:
    """(SQL condition, its parameters) limiting a query to one tenant, or to none for ``None`` (operators).

    The tenant id is always a bound parameter, never part of the SQL text.
    """
    return ("tenant_id = ?", [tenant_id]) if tenant_id is not None else ("TRUE", [])

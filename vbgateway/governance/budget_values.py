"""What a budget is made of: UTC calendar months, a limit in exact USD, alert thresholds, and the status model.

Input is checked here once, for every door (the Python API, the CLI, a
scenario file), so a bad limit or threshold is the same clear
VALIDATION_ERROR everywhere and nothing is changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import PlainSerializer

from ..errors import ValidationError
from ..models import Money, Timestamp, WireModel

__all__ = [
    "DEFAULT_ALERT_AT",
    "MAX_ALERTS",
    "MAX_MONTHLY_USD",
    "MONEY_PLACES",
    "RATIO_PLACES",
    "Budget",
    "BudgetAlert",
    "Ratio",
    "month_bounds",
    "month_label",
    "parse_alert_at",
    "parse_monthly_usd",
    "plain_decimal",
]

DEFAULT_ALERT_AT = (Decimal("0.5"), Decimal("0.8"), Decimal("1"))
MONEY_PLACES = 10  # the store's money columns: DECIMAL(24, 10)
MAX_MONTHLY_USD = Decimal("1E12")  # fits DECIMAL(24, 10) with room for a month's spend on top
RATIO_PLACES = 6  # DECIMAL(9, 6)
MAX_ALERTS = 10

Ratio = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


def month_bounds(at: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar month holding ``at``: [first instant, first instant of the next month)."""
    at = at.astimezone(UTC)
    start = datetime(at.year, at.month, 1, tzinfo=UTC)
    end = datetime(at.year + 1, 1, 1, tzinfo=UTC) if at.month == 12 else datetime(at.year, at.month + 1, 1, tzinfo=UTC)
    return start, end


def month_label(at: datetime) -> str:
    """``2026-03``: how months are named in ``budget_alerts`` and on the wire."""
    at = at.astimezone(UTC)
    return f"{at.year:04d}-{at.month:02d}"


def plain_decimal(value: Decimal) -> Decimal:
    """``Decimal("50.0000000000")`` (as DuckDB gives it back) as ``Decimal("50")``, never as ``5E+1``."""
    number = value.normalize()
    return number.quantize(Decimal(1)) if number.as_tuple().exponent > 0 else number  # type: ignore[operator]


def _decimal(value: object, field: str, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
        raise ValidationError(f"{what} is a Decimal, an integer or a decimal string, not {type(value).__name__}"
                              + (" (floats are not exact)" if isinstance(value, float) else ""),
                              details={"field": field})
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, ValueError):
        raise ValidationError(f"{what} must be a decimal number, got {str(value)[:40]!r}",
                              details={"field": field}) from None
    if not number.is_finite():
        raise ValidationError(f"{what} must be a finite number", details={"field": field})
    return number


def parse_monthly_usd(value: object) -> Decimal:
    """A monthly limit: more than 0 USD, at most 1E12, at most 10 decimal places (the store's exact money)."""
    limit = _decimal(value, "monthlyUsd", "monthly_usd")
    if not 0 < limit <= MAX_MONTHLY_USD:
        raise ValidationError(f"monthly_usd must be more than 0 and at most {MAX_MONTHLY_USD:,.0f}",
                              details={"field": "monthlyUsd", "value": str(limit)[:40]})
    if -limit.normalize().as_tuple().exponent > MONEY_PLACES:  # type: ignore[operator]
        raise ValidationError(f"monthly_usd has at most {MONEY_PLACES} decimal places",
                              details={"field": "monthlyUsd", "value": str(limit)[:40]})
    return limit


def parse_alert_at(values: object) -> tuple[Decimal, ...]:
    """Alert thresholds: shares of the limit in (0, 1], strictly ascending, at most 10, 6 decimal places each.

    A threshold above 1 could never be crossed (spend never passes the
    limit), so it is refused rather than kept silently. Floats are taken
    at their shortest repr (0.8 is 0.8): a threshold is a share, not money.
    """
    if values is None:
        return ()
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValidationError("alert_at is a sequence of shares of the limit, e.g. (0.5, 0.8, 1.0)",
                              details={"field": "alertAt"})
    thresholds: list[Decimal] = []
    for raw in values:
        value = _decimal(repr(raw) if isinstance(raw, float) else raw, "alertAt", "an alert threshold")
        if not 0 < value <= 1:
            raise ValidationError(f"alert thresholds are shares of the limit in (0, 1], got {value}",
                                  details={"field": "alertAt", "value": str(value)[:40]})
        if -value.normalize().as_tuple().exponent > RATIO_PLACES:  # type: ignore[operator]
            raise ValidationError(f"an alert threshold has at most {RATIO_PLACES} decimal places, got {value}",
                                  details={"field": "alertAt", "value": str(value)[:40]})
        if thresholds and value <= thresholds[-1]:
            raise ValidationError("alert thresholds must be strictly ascending, e.g. (0.5, 0.8, 1.0)",
                                  details={"field": "alertAt"})
        thresholds.append(value.normalize())
        if len(thresholds) > MAX_ALERTS:
            raise ValidationError(f"at most {MAX_ALERTS} alert thresholds", details={"field": "alertAt"})
    return tuple(thresholds)


class BudgetAlert(WireModel):
    """A threshold crossed this month: when, and the month's committed spend once the crossing reply counted."""

    threshold: Ratio
    crossed_at: Timestamp
    spent_usd: Money


class Budget(WireModel):
    """A tenant's monthly budget as it stands now, in exact USD.

    ``spent_usd``: committed replies of this UTC month. ``reserved_usd``: the
    most the replies in flight can still cost. ``remaining_usd``: what new
    requests can reserve (never below 0).
    """

    month: str
    monthly_usd: Money
    spent_usd: Money
    reserved_usd: Money
    remaining_usd: Money
    alert_at: list[Ratio]
    alerts: list[BudgetAlert]

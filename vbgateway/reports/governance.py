"""What the reports show of governance: a tenant's budget on its invoice, refusals and open breakers on usage.

Budgets, refusals and breakers are read from their own tables
(``budgets``, ``budget_alerts``, ``request_refusals``, ``breaker_transitions``)
beside the billed events, so a report says how close a tenant came to its
limit and what the gateway turned away, not only what it billed. A source
without those tables (an older lake or export) gives empty tables, and the
report says "none".

Money stays Decimal: the month's spend is the exact sum of ``usage_events``,
and the share of the budget is that sum over the limit, rounded only for
printing.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd

from .. import analytics

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["BUDGET_COLUMNS", "REFUSAL_CODES", "budget_tables", "refusal_tables"]

REFUSAL_CODES = ("RATE_LIMIT_EXCEEDED", "BUDGET_EXCEEDED")
BUDGET_COLUMNS = ("month", "monthly_usd", "spent_usd", "peak_share", "alert_at")
_ALERT_COLUMNS = ("threshold", "crossed_at", "spent_usd", "monthly_usd")


def _has_table(gw: Gateway, name: str) -> bool:
    """Whether the source has ``name`` (a lake or an export written before governance has not)."""
    found = gw.sql("SELECT count(*) AS n FROM information_schema.tables WHERE table_name = ?", [name])
    return int(found.n[0]) > 0


def _money(values: Any) -> list[Decimal]:
    return [v if isinstance(v, Decimal) else Decimal(str(v)) for v in values]


def budget_tables(gw: Gateway, tenant_id: str, first: date, last: date) -> dict[str, pd.DataFrame]:
    """The tenant's budget for the month ``first``-``last``: limit, spend, peak share, crossed alerts, daily curve.

    The limit is the one recorded with the month's alerts when any were
    crossed (the limit then), otherwise the tenant's current budget. Spend
    only grows within a month, so the peak share is the month's spend over
    the limit, which may pass 1 when replies already under way finished.
    """
    lower, upper = analytics.day_range(first, last)
    month = f"{first:%Y-%m}"
    alerts = pd.DataFrame(columns=list(_ALERT_COLUMNS))
    if _has_table(gw, "budget_alerts"):
        alerts = gw.sql("SELECT threshold, crossed_at, spent_usd, monthly_usd FROM budget_alerts "
                        "WHERE tenant_id = ? AND month = ? ORDER BY threshold", [tenant_id, month])
    limit: Decimal | None = None
    alert_at: str = ""
    if _has_table(gw, "budgets"):
        row = gw.sql("SELECT monthly_usd, alert_at FROM budgets WHERE tenant_id = ?", [tenant_id])
        if len(row):
            limit = _money(row.monthly_usd)[0]
            alert_at = ", ".join(f"{(Decimal(str(a)) * 100).normalize():f}%" for a in row.alert_at[0])
    if len(alerts):
        limit = _money(alerts.monthly_usd)[-1]
    daily = gw.sql("SELECT CAST(date_trunc('day', created_at AT TIME ZONE 'UTC') AS DATE) AS day, "
                   "sum(cost_usd) AS cost_usd FROM usage_events WHERE tenant_id = ? AND created_at >= ? "
                   "AND created_at < ? GROUP BY 1 ORDER BY 1", [tenant_id, lower, upper])
    days = pd.DataFrame({"day": [first + timedelta(days=n) for n in range((last - first).days + 1)]})
    costs = dict(zip(daily.day, _money(daily.cost_usd), strict=True))
    curve, total = [], Decimal(0)
    for day in days.day:
        total += costs.get(day, Decimal(0))
        curve.append(total)
    days["cumulative_usd"] = pd.Series(curve, dtype=object)
    if limit is None:
        return {"budget": pd.DataFrame(columns=list(BUDGET_COLUMNS)), "budget_alerts": alerts, "budget_curve": days}
    share = (total / limit) if limit else Decimal(0)
    budget = pd.DataFrame([{"month": month, "monthly_usd": limit, "spent_usd": total,
                            "peak_share": share, "alert_at": alert_at}])
    return {"budget": budget, "budget_alerts": alerts, "budget_curve": days}


def refusal_tables(gw: Gateway, scope: str | None, first: date, last: date) -> dict[str, pd.DataFrame]:
    """Requests refused before any provider was called, per tenant and UTC day and per tenant, by code;
    and each provider's breaker open time over the days (breakers are the gateway's, so every report shows them).
    """
    lower, upper = analytics.day_range(first, last)
    per_day = pd.DataFrame(columns=["tenant_id", "day", "rate_limit_refusals", "budget_refusals"])
    if _has_table(gw, "request_refusals"):
        where = "created_at >= ? AND created_at < ?" + ("" if scope is None else " AND tenant_id = ?")
        params: list[Any] = [lower, upper] + ([] if scope is None else [scope])
        per_day = gw.sql(f"""
            SELECT tenant_id, CAST(date_trunc('day', created_at AT TIME ZONE 'UTC') AS DATE) AS day,
                   count(*) FILTER (code = 'RATE_LIMIT_EXCEEDED') AS rate_limit_refusals,
                   count(*) FILTER (code = 'BUDGET_EXCEEDED') AS budget_refusals
            FROM request_refusals WHERE {where} GROUP BY 1, 2 ORDER BY 2, 1""", params)
    for column in ("rate_limit_refusals", "budget_refusals"):
        per_day[column] = per_day[column].astype("int64")
    per_tenant = (per_day.groupby("tenant_id", as_index=False)[["rate_limit_refusals", "budget_refusals"]].sum()
                  .sort_values("tenant_id", ignore_index=True))
    open_time = pd.DataFrame(columns=list(analytics.breakers.OPEN_TIME_COLUMNS))
    if _has_table(gw, "breaker_transitions"):
        open_time = analytics.breaker_open_time(gw, first, last)
    return {"refusals_daily": per_day, "refusals_by_tenant": per_tenant, "breaker_open_time": open_time}

"""How good the month-end forecast is: every day of every complete month, forecast, then compared.

For each complete calendar month between ``start`` and ``end`` and each of
its days, the forecast is made as of that day's midnight from the data
before it, and set against the month's actual spend. The share of month ends
inside the 80% interval (its coverage) should be near 80%; the issue's
target is 70-90%. ``docs/analytics.md`` reports it on simulated months.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pandas as pd

from .forecast import INTERVAL, month_end_forecasts
from .periods import month_range, parse_day

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["forecast_backtest", "forecast_coverage"]


def _months(first: date, last: date) -> list[str]:
    """The calendar months lying wholly inside ``first``..``last``."""
    out: list[str] = []
    year, month = first.year, first.month
    while True:
        label = f"{year:04d}-{month:02d}"
        begin, end = month_range(label)
        if end > last:
            return out
        if begin >= first:
            out.append(label)
        year, month = year + month // 12, month % 12 + 1


def forecast_backtest(gw: Gateway, start: object, end: object, *, tenant_id: str | None = None,
                      min_history_days: int = 7, interval: float = INTERVAL) -> pd.DataFrame:
    """One row per tenant, month and forecast day: the forecast then, the month's actual spend, inside or not.

    Days with less than ``min_history_days`` of history before them are left
    out (the forecast then knows too little to be judged).
    """
    first, last = parse_day(start, "start"), parse_day(end, "end")
    [(data_last,)] = gw.store.read_rows("SELECT max(day) FROM daily_usage")
    if data_last is None:
        last = first - timedelta(days=1)
    elif data_last < last:
        last = data_last  # a month the data does not reach to its end is not a month to judge
    rows = []
    for month in _months(first, last):
        month_first, month_last = month_range(month)
        actual = {f.tenant_id: f.month_to_date_usd for f in month_end_forecasts(
            gw, tenant_id, month=month, as_of=datetime.combine(month_last + timedelta(days=1), datetime.min.time(), UTC))}
        day = month_first
        while day <= month_last:
            as_of = datetime.combine(day, datetime.min.time(), UTC)
            for f in month_end_forecasts(gw, tenant_id, month=month, as_of=as_of, interval=interval):
                if f.history_days >= min_history_days and f.tenant_id in actual:
                    total = actual[f.tenant_id]
                    rows.append({"tenant_id": f.tenant_id, "month": month, "as_of": day,
                                 "days_left": f.remaining_days, "history_days": f.history_days,
                                 "point_usd": f.point_usd, "low_usd": f.low_usd, "high_usd": f.high_usd,
                                 "actual_usd": total, "inside": bool(f.low_usd <= total.quantize(Decimal("0.01"))
                                                                     <= f.high_usd)})
            day += timedelta(days=1)
    return pd.DataFrame(rows, columns=["tenant_id", "month", "as_of", "days_left", "history_days", "point_usd",
                                       "low_usd", "high_usd", "actual_usd", "inside"])


def forecast_coverage(backtest: pd.DataFrame) -> dict[str, float]:
    """Coverage of the interval, and the point forecast's mean absolute error in % of the actual spend."""
    if backtest.empty:
        return {"forecasts": 0, "coverage": float("nan"), "mape_pct": float("nan")}
    actual = backtest.actual_usd.astype(float)
    error = (backtest.point_usd.astype(float) - actual).abs() / actual.where(actual > 0)
    return {"forecasts": len(backtest), "coverage": float(backtest.inside.mean()),
            "mape_pct": float(error.mean() * 100)}

"""Month-end spend per tenant "at this pace": a point forecast and an 80% interval.

Method: day-of-week means with a residual bootstrap (Hyndman & Athanasopoulos,
*Forecasting: Principles and Practice*, 3rd ed., sections 5.2 and 5.5), on the
daily spend of the last ``HISTORY_DAYS`` complete days:

- each remaining day of the month is forecast as the mean spend of the same
  weekday in the history (weekly seasonality, no trend);
- the interval comes from ``PATHS`` simulated futures: the history is rebuilt
  from its fitted values plus resampled residuals, the weekday means are
  estimated again from it (so the interval holds the uncertainty of the means
  themselves, which every remaining day shares), and each remaining day gets
  a fresh resampled residual; the 10th and 90th percentiles of the simulated
  month totals bound the 80% interval.

Assumptions, and when they fail: the level of the last weeks holds to the end
of the month (a tenant growing fast is under-forecast), the weekly pattern is
stable, and day-to-day deviations are independent and alike (an outage or a
campaign makes a fatter tail than the history showed). The spend of the days
already over is exact (``daily_usage``); today counts as a whole forecast day,
or its spend so far if that is higher. With less than a week of history the
weekday means become one overall mean. ``docs/analytics.md`` shows the
measured coverage of the interval.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ValidationError
from .periods import month_range

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["HISTORY_DAYS", "INTERVAL", "METHOD", "PATHS", "SpendForecast", "forecast_spend", "month_end_forecast",
           "month_end_forecasts"]

HISTORY_DAYS = 56  # eight weeks: each weekday's mean from eight values, recent enough to follow the level
INTERVAL = 0.8
PATHS = 1000  # the 10th and 90th percentiles of 1,000 totals move by about 1% of the spread between runs
METHOD = "day-of-week means, residual bootstrap"
_CENT = Decimal("0.01")
_MIDNIGHT = time(0, tzinfo=UTC)


@dataclass(frozen=True)
class SpendForecast:
    """A tenant's spend for a calendar month: so far (exact) and at this pace (point and interval, to the cent)."""

    tenant_id: str
    month: str
    as_of: datetime
    month_to_date_usd: Decimal
    point_usd: Decimal
    low_usd: Decimal
    high_usd: Decimal
    history_days: int  # days the forecast learnt from (0: none, the figures are the month to date)
    remaining_days: int  # days of the month still forecast, today included
    interval: float = INTERVAL
    method: str = METHOD

    def as_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "month": self.month, "as_of": self.as_of,
                "month_to_date_usd": self.month_to_date_usd, "point_usd": self.point_usd, "low_usd": self.low_usd,
                "high_usd": self.high_usd, "interval": self.interval, "history_days": self.history_days,
                "remaining_days": self.remaining_days, "method": self.method}


def _cents(value: float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(_CENT, rounding=ROUND_HALF_UP)


def _seed(*parts: object) -> int:
    """A seed from the question (tenant, day): the same question gets the same interval."""
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


def forecast_spend(history: np.ndarray, history_weekdays: np.ndarray, remaining_weekdays: np.ndarray, *,
                   today_so_far: float = 0.0, interval: float = INTERVAL, paths: int = PATHS,
                   seed: int = 0) -> tuple[float, float, float]:
    """(point, low, high) of the spend still to come over ``remaining_weekdays`` (the first is today).

    ``history``: daily spend of complete days, oldest first, with their
    weekdays (0 = Monday). Pure arithmetic, so a backtest calls it directly.
    """
    if len(remaining_weekdays) == 0:
        return 0.0, 0.0, 0.0
    if len(history) == 0:
        return today_so_far, today_so_far, today_so_far
    seasonal = len(history) >= 7
    groups = history_weekdays if seasonal else np.zeros(len(history), dtype=np.int64)
    ahead = remaining_weekdays if seasonal else np.zeros(len(remaining_weekdays), dtype=np.int64)
    counts = np.bincount(groups, minlength=7).astype(np.float64)
    means = np.bincount(groups, weights=history, minlength=7) / np.maximum(counts, 1)
    residuals = history - means[groups]
    # In-sample residuals understate the spread by (n - 1) / n in variance: widen them back.
    n = counts[groups]
    residuals = residuals * np.sqrt(np.where(n > 1, n / np.maximum(n - 1, 1), 1.0))

    def total(day_means: np.ndarray, noise: np.ndarray) -> np.ndarray:
        days = np.maximum(day_means[..., ahead] + noise, 0.0)
        days[..., 0] = np.maximum(days[..., 0], today_so_far)
        return days.sum(axis=-1)  # type: ignore[no-any-return]

    point = float(total(means, np.zeros(len(ahead))))
    rng = np.random.default_rng(seed)
    rebuilt = means[groups] + residuals[rng.integers(0, len(residuals), size=(paths, len(history)))]
    boot_means = rebuilt @ np.eye(7)[groups] / np.maximum(counts, 1)  # each path's weekday means at once
    simulated = total(boot_means, residuals[rng.integers(0, len(residuals), size=(paths, len(ahead)))])
    tail = (1.0 - interval) / 2
    low, high = np.quantile(simulated, [tail, 1.0 - tail])
    return point, float(min(low, point)), float(max(high, point))


def _plus(day: date, days: int) -> date:
    """``day`` moved by ``days``, held at the calendar's ends (0001-01-01, 9999-12-31): any month can be asked."""
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return date.max if days > 0 else date.min


def _daily_spend(gw: Gateway, tenant_id: str | None, first: date, last: date) -> dict[str, dict[date, Decimal]]:
    """Exact spend per tenant and day in ``first``..``last`` (days without usage are absent)."""
    where, params = ("tenant_id = ? AND ", [tenant_id]) if tenant_id is not None else ("", [])
    rows = gw.store.read_rows(f"""
        SELECT tenant_id, day, sum(cost_usd)::DECIMAL(38, 10) FROM daily_usage
        WHERE {where}day BETWEEN ? AND ? GROUP BY ALL""", params + [first, last])
    spend: dict[str, dict[date, Decimal]] = {}
    for tenant, day, cost in rows:
        spend.setdefault(tenant, {})[day] = cost
    return spend


def _first_days(gw: Gateway, tenant_id: str | None, before: date) -> dict[str, date]:
    """Each tenant's first day of usage (before ``before``): history never reaches further back."""
    where, params = ("tenant_id = ? AND ", [tenant_id]) if tenant_id is not None else ("", [])
    rows = gw.store.read_rows(f"SELECT tenant_id, min(day) FROM daily_usage WHERE {where}day < ? GROUP BY ALL",
                              params + [before])
    return dict(rows)


def month_end_forecasts(gw: Gateway, tenant_id: str | None = None, *, month: str | None = None,
                        as_of: datetime | None = None, interval: float = INTERVAL,
                        history_days: int = HISTORY_DAYS) -> list[SpendForecast]:
    """The month-end forecast of one tenant, or of every tenant with usage (``tenant_id=None``).

    ``month`` (``YYYY-MM``, default: the month of ``as_of``); ``as_of``
    (default: the gateway's clock) is the moment the forecast is made: days
    before it are history, the rest of the month is forecast. A month over by
    then is simply its spend.
    """
    if not 0 < interval < 1:
        raise ValidationError("interval is a share between 0 and 1", details={"field": "interval"})
    moment = (as_of or gw.clock.now()).astimezone(UTC)
    first, last = month_range(month if month is not None else f"{moment:%Y-%m}")
    today = min(max(moment.date(), first), _plus(last, 1))  # the first day not over
    start = min(_plus(today, -history_days), first)
    spend = _daily_spend(gw, tenant_id, start, last)
    began = _first_days(gw, tenant_id, today)
    tenants = [tenant_id] if tenant_id is not None else sorted(set(spend) | set(began))
    remaining = [today + timedelta(days=i) for i in range(max((last - today).days + 1, 0))]
    out = []
    # Spend up to the moment: at midnight exactly, nothing of that day yet (what a backtest asks).
    through = _plus(moment.date(), -1) if moment.timetz() == _MIDNIGHT else moment.date()
    for tenant in tenants:
        days = spend.get(tenant, {})
        so_far = sum((c for d, c in days.items() if first <= d <= last and d <= through), Decimal(0))
        before_today = sum((c for d, c in days.items() if first <= d < today), Decimal(0))
        origin = max(_plus(today, -history_days), began.get(tenant, today))
        past = [origin + timedelta(days=i) for i in range((today - origin).days)]
        history = np.array([float(days.get(d, 0)) for d in past], dtype=np.float64)
        today_so_far = float(days.get(today, 0)) if today <= through else 0.0
        point, low, high = forecast_spend(
            history, np.array([d.weekday() for d in past], dtype=np.int64),
            np.array([d.weekday() for d in remaining], dtype=np.int64), today_so_far=today_so_far,
            interval=interval, seed=_seed(tenant, today))
        base = float(before_today)
        out.append(SpendForecast(tenant, f"{first:%Y-%m}", moment, so_far, _cents(base + point), _cents(base + low),
                                 _cents(base + high), len(past), len(remaining), interval))
    return out


def month_end_forecast(gw: Gateway, tenant_id: str, *, month: str | None = None, as_of: datetime | None = None,
                       interval: float = INTERVAL) -> SpendForecast:
    """One tenant's month-end forecast (see ``month_end_forecasts``)."""
    if not isinstance(tenant_id, str):
        raise ValidationError("a forecast is for one tenant", details={"field": "tenant_id"})
    return month_end_forecasts(gw, tenant_id, month=month, as_of=as_of, interval=interval)[0]

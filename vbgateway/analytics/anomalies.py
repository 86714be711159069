"""Days that stand out: daily spend, error rate and p95 latency against their own recent past.

Method: a robust z-score against a seasonal baseline (Iglewicz & Hoaglin's
modified z-score). For each tenant (spend) and each tenant and provider
(error rate, p95 latency), a day is compared with the median of the same
metric on the previous ``BASELINE_DAYS`` days of the same kind (weekdays with
weekdays, weekend days with weekend days: traffic has a weekly shape, and a
quiet Saturday is not an anomaly):

    z = (value - median) / scale,   scale = max(1.4826 * MAD, floor)

and flagged when ``|z| > THRESHOLD`` (3.5). Only whole days are judged: not
today, whose spend is still growing, nor days after the last day with usage.
A median absolute deviation of a few days can be tiny by chance, so the
scale has a floor, the spread sampling alone gives a day's value: for spend
10% of the median, or 2.5 / sqrt(replies) of it on a quiet day (replies come
in sessions of a few); for an error rate the binomial spread
sqrt(p (1 - p) / n) of the day's n tries, and at least one percentage point;
for a p95 latency 10% of the median, or 2 / sqrt(0.05 n) of it when the
day's slowest 5% are only a few tries. At least ``MIN_BASELINE`` earlier
days of the same kind are needed: before that nothing is flagged (the first
days of a tenant, or of a dataset, have no past to stand out from).

Spend reads the daily aggregates; error rates and latency percentiles read
``provider_call_events`` (every try, failed ones included).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .periods import day_range, tenant_scope

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["BASELINE_DAYS", "METRICS", "MIN_BASELINE", "THRESHOLD", "anomalies", "anomaly_scores"]

BASELINE_DAYS = 28
MIN_BASELINE = 3
THRESHOLD = 3.5
METRICS = ("spend_usd", "error_rate", "p95_latency_ms")
_COLUMNS = ["day", "tenant_id", "provider", "metric", "value", "baseline", "z", "flagged", "direction"]


def _series(gw: Gateway, tenant_id: str | None, first: date, last: date) -> pd.DataFrame:
    """Long table: day, tenant_id, provider ('' for all providers), metric, value, attempts (replies for spend)."""
    lower, upper = day_range(first, last)
    where, params = tenant_scope(tenant_id)
    spend = gw.store.read_rows(f"""
        SELECT day, tenant_id, sum(cost_usd)::DOUBLE, sum(replies) FROM daily_usage
        WHERE {where} AND day BETWEEN ? AND ? GROUP BY ALL""", params + [first, last])
    began = dict(gw.store.read_rows(f"SELECT tenant_id, min(day) FROM daily_usage WHERE {where} GROUP BY ALL", params))
    calls = gw.store.read_rows(f"""
        SELECT CAST(created_at AS DATE) AS day, tenant_id, provider, count(*)::BIGINT,
               (count(*) FILTER (status <> 'ok'))::BIGINT, quantile_cont(latency_ms, 0.95)::DOUBLE
        FROM provider_call_events WHERE {where} AND created_at >= ? AND created_at < ? GROUP BY ALL""",
                               params + [lower, upper])
    rows: list[tuple[Any, ...]] = []
    spent = {(d, t): (v, int(n)) for d, t, v, n in spend}
    for tenant, start in began.items():  # a day without replies spent nothing: a zero, not a gap
        day = max(start, first)
        while day <= last:
            value, replies = spent.get((day, tenant), (0.0, 0))
            rows.append((day, tenant, "", "spend_usd", value, replies))
            day += timedelta(days=1)
    for day, tenant, provider, attempts, failed, p95 in calls:
        rows.append((day, tenant, provider, "error_rate", failed / attempts, attempts))
        rows.append((day, tenant, provider, "p95_latency_ms", p95, attempts))
    return pd.DataFrame(rows, columns=["day", "tenant_id", "provider", "metric", "value", "attempts"])


def _floor(metric: str, median: float, attempts: int) -> float:
    """The least spread a day's value is judged against: what sampling alone makes it vary by."""
    if metric == "error_rate":
        p = min(max(median, 0.0), 1.0)
        return max(float(np.sqrt(p * (1 - p) / max(attempts, 1))), 0.01)
    if metric == "p95_latency_ms":  # a p95 rests on the slowest 5% of the day's tries
        return max(0.10 * abs(median), 2 * abs(median) / float(np.sqrt(max(0.05 * attempts, 1.0))), 1e-9)
    # spend: the day's replies come in sessions of a few, so it varies by about 2.5 / sqrt(replies)
    return max(0.10 * abs(median), 2.5 * abs(median) / float(np.sqrt(max(attempts, 1))), 1e-9)


def _score(group: pd.DataFrame, baseline_days: int, min_baseline: int, threshold: float) -> list[dict[str, Any]]:
    """Each day of one series against the earlier days of the same kind within ``baseline_days``."""
    days = list(group.day)
    values = group.value.to_numpy(dtype=np.float64)
    weekend = np.array([d.weekday() >= 5 for d in days])
    out = []
    for i, day in enumerate(days):
        earlier = [j for j in range(i) if weekend[j] == weekend[i] and (day - days[j]).days <= baseline_days]
        row = {"day": day, "tenant_id": group.tenant_id.iat[i], "provider": group.provider.iat[i],
               "metric": group.metric.iat[i], "value": float(values[i]), "baseline": float("nan"),
               "z": float("nan"), "flagged": False, "direction": ""}
        if len(earlier) >= min_baseline:
            past = values[earlier]
            median = float(np.median(past))
            scale = max(1.4826 * float(np.median(np.abs(past - median))),
                        _floor(row["metric"], median, int(group.attempts.iat[i])))
            z = (values[i] - median) / scale
            row.update(baseline=median, z=float(z), flagged=bool(abs(z) > threshold),
                       direction="high" if z > 0 else "low")
        out.append(row)
    return out


def anomaly_scores(gw: Gateway, tenant_id: str | None, start: object, end: object, *,
                   baseline_days: int = BASELINE_DAYS, min_baseline: int = MIN_BASELINE,
                   threshold: float = THRESHOLD) -> pd.DataFrame:
    """Every day of every series in ``start``..``end`` with its baseline, robust z-score and flag."""
    lower, upper = day_range(start, end)
    first, last = lower.date(), (upper - timedelta(microseconds=1)).date()
    # Only whole days are judged: not today (its spend is still growing), nor days after the data ends.
    [(data_last,)] = gw.store.read_rows("SELECT max(day) FROM daily_usage")
    last = min(last, gw.clock.now().date() - timedelta(days=1), data_last or first - timedelta(days=1))
    data = _series(gw, tenant_id, first - timedelta(days=baseline_days), last)
    rows: list[dict[str, Any]] = []
    for _, group in data.sort_values("day").groupby(["tenant_id", "provider", "metric"], sort=True):
        rows.extend(r for r in _score(group.reset_index(drop=True), baseline_days, min_baseline, threshold)
                    if first <= r["day"] <= last)
    frame = pd.DataFrame(rows, columns=_COLUMNS).astype({"flagged": bool})
    return frame.sort_values(["day", "tenant_id", "provider", "metric"], ignore_index=True)


def anomalies(gw: Gateway, tenant_id: str | None, start: object, end: object, **options: Any) -> pd.DataFrame:
    """The flagged days only (see the module docstring): day, tenant, provider, metric, value, baseline, z."""
    scores = anomaly_scores(gw, tenant_id, start, end, **options)
    return scores.loc[scores["flagged"].astype(bool)].drop(columns="flagged").reset_index(drop=True)

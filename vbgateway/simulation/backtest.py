"""``backtest``: fit a scenario on a period, simulate it over the same period, compare day by day.

The figures compared are read the same way from both databases
(``daily_figures``): customer messages (requests, answered or not), billed
cost, the fallback rate (replies served by a vendor other than the agent's
primary), failed replies (messages no vendor answered) and the p95 latency
of the tries. The fitted scenario runs with its own seed, so the comparison
includes the noise of one seed against another; ``docs/simulation.md``
gives the measured errors at the volumes where that noise is small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .fit import fit_scenario, open_source, period
from .scenario import Scenario

if TYPE_CHECKING:
    import altair as alt

    from ..gateway import Gateway

__all__ = ["METRICS", "Backtest", "backtest", "daily_figures", "day_by_day", "incident_errors"]

METRICS = ("messages", "cost_usd", "fallback_rate", "failed_replies", "p95_latency_ms")
_RATES = {"fallback_rate"}


def daily_figures(gw: Gateway, lower: datetime, upper: datetime) -> pd.DataFrame:
    """One row per UTC day of [lower, upper) with traffic: the figures ``METRICS`` names."""
    return gw.sql("""
        WITH requests AS (
            SELECT request_id, min(created_at) AS sent, bool_or(status = 'ok') AS answered
            FROM provider_call_events WHERE created_at >= ? AND created_at < ? AND status <> 'skipped'
            GROUP BY request_id),
        per_day AS (
            SELECT CAST(sent AS DATE) AS day, count(*) AS messages, count(*) FILTER (NOT answered) AS failed_replies
            FROM requests GROUP BY ALL),
        billed AS (
            SELECT CAST(u.created_at AS DATE) AS day, sum(u.cost_usd)::DOUBLE AS cost_usd,
                   avg((u.provider <> a.primary_provider)::INTEGER)::DOUBLE AS fallback_rate
            FROM usage_events u JOIN agents a ON a.id = u.agent_id
            WHERE u.created_at >= ? AND u.created_at < ? GROUP BY ALL),
        latency AS (
            SELECT CAST(created_at AS DATE) AS day, quantile_cont(latency_ms, 0.95)::DOUBLE AS p95_latency_ms
            FROM provider_call_events WHERE created_at >= ? AND created_at < ? AND status <> 'skipped' GROUP BY ALL)
        SELECT p.day, p.messages::DOUBLE AS messages, coalesce(b.cost_usd, 0) AS cost_usd,
               coalesce(b.fallback_rate, 0) AS fallback_rate, p.failed_replies::DOUBLE AS failed_replies,
               l.p95_latency_ms
        FROM per_day p LEFT JOIN billed b USING (day) LEFT JOIN latency l USING (day) ORDER BY p.day""",
                  [lower, upper] * 3)


@dataclass
class Backtest:
    """The fitted scenario, observed against simulated figures per day, and the summary of their differences."""

    fitted: Scenario
    daily: pd.DataFrame  # day, metric, observed, simulated, error_pct (for a rate: percentage points)
    summary: dict[str, Any] = field(default_factory=dict)

    def chart(self) -> alt.FacetChart:
        """Observed and simulated, one panel per figure, days along the bottom (Altair)."""
        import altair as alt

        long = self.daily.melt(id_vars=["day", "metric"], value_vars=["observed", "simulated"], var_name="source")
        long["day"] = pd.to_datetime(long["day"])
        chart: alt.FacetChart = alt.Chart(long).mark_line(point=True).encode(
            x=alt.X("day:T", title=None), y=alt.Y("value:Q", title=None),
            color=alt.Color("source:N", title=None, scale=alt.Scale(range=["#2563eb", "#f97316"])),
            tooltip=["day:T", "metric:N", "source:N", alt.Tooltip("value:Q", format=",.4~f")],
        ).properties(width=520, height=110).facet(row=alt.Row("metric:N", title=None)).resolve_scale(y="independent")
        return chart


def day_by_day(observed: pd.DataFrame, other: pd.DataFrame, other_name: str, difference: str) -> pd.DataFrame:
    """Each metric of each day, observed against ``other`` (the simulated or the replayed days), long form:
    ``day, metric, observed, <other_name>, <difference>`` (per cent; a rate in percentage points, since a
    relative error of a rate near zero says nothing)."""
    both = observed.merge(other, on="day", how="outer", suffixes=("_observed", "_other")).fillna(0.0)
    rows = []
    for metric in METRICS:
        for day, seen, made in zip(both.day, both[f"{metric}_observed"], both[f"{metric}_other"], strict=True):
            change = (made - seen) * 100 if metric in _RATES else (made - seen) / seen * 100 if seen else float("nan")
            rows.append({"day": day, "metric": metric, "observed": float(seen), other_name: float(made),
                         difference: change})
    return pd.DataFrame(rows)


def incident_errors(fitted: Scenario, truth: Scenario) -> pd.DataFrame:
    """Each true incident against the fitted one of its vendor and kind nearest to it (minutes off at each edge)."""
    rows = []
    found = [(i.vendor, i.kind, *i.window(fitted.start)) for i in fitted.incidents]
    for incident in truth.incidents:
        start, end = incident.window(truth.start)
        same = [(abs((a - start).total_seconds()) + abs((b - end).total_seconds()), a, b)
                for vendor, kind, a, b in found if (vendor, kind) == (incident.vendor, incident.kind)]
        row: dict[str, Any] = {"vendor": incident.vendor, "kind": incident.kind, "start": start, "end": end,
                               "found": bool(same), "start_error_min": float("nan"), "end_error_min": float("nan")}
        if same:
            _, a, b = min(same)
            row.update(start_error_min=(a - start).total_seconds() / 60, end_error_min=(b - end).total_seconds() / 60)
        rows.append(row)
    return pd.DataFrame(rows, columns=["vendor", "kind", "start", "end", "found", "start_error_min", "end_error_min"])


def backtest(source: str | Path | Gateway, start: object, end: object, *, seed: int = 1,
             workers: int | None = None) -> Backtest:
    """Fit on [start, end), simulate the fitted scenario over the same period, and compare per day."""
    from .runner import simulate

    lower, upper = period(start, end)
    with open_source(source) as gw:
        fitted = fit_scenario(gw, lower, upper, seed=seed)
        observed = daily_figures(gw, lower, upper)
    result = simulate(fitted, ":memory:", keep_open=True, workers=workers)
    try:
        assert result.gateway is not None
        simulated = daily_figures(result.gateway, lower, upper)
    finally:
        result.close()
    daily = day_by_day(observed, simulated, "simulated", "error_pct")
    summary: dict[str, Any] = {"days": int(observed.shape[0]), "incidents_found": len(fitted.incidents)}
    for metric in METRICS:
        errors = daily[daily.metric == metric].error_pct.abs()
        unit = "pts" if metric in _RATES else "pct"
        summary[f"{metric}_mean_abs_error_{unit}"] = round(float(errors.mean()), 2) if errors.notna().any() else None
    return Backtest(fitted, daily, summary)

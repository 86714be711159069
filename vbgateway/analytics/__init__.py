"""Usage analytics: the numbers behind /v1/usage, the dashboard and the reports.

Every function reads the store through the gateway (so pending journal
records are applied first), takes a scope (one tenant id, or ``None`` for all
tenants, which only operators get) and a range of UTC calendar days with both
ends inclusive. Results are pandas DataFrames whose money columns stay exact
(Arrow-backed ``decimal128``), or small dataclasses of them.

Callers use the names below as ``analytics.rollup`` and so on; each lives in
the module of the question it answers:

- ``periods``: days, months and the tenant scope, checked once for every query;
- ``totals``: the rollup, event pages and the operators' tenant list (``usage_events``);
- ``series``: a row per month, day or channel, zeros included, for charts;
- ``attempts``: latency and reliability from every try (``provider_call_events``);
- ``breakers``: circuit breaker transitions and open time (operators only: no tenant scope);
- ``kpis``: a period against the one before it;
- ``billing``: one tenant's month for an invoice;
- ``aggregated``: the same figures of one tenant from the daily aggregates (what the above use);
- ``forecast`` and ``forecast_check``: month-end spend at this pace, and how good that forecast is;
- ``anomalies``: days whose spend, error rate or p95 latency stand out from their recent past.
"""

from __future__ import annotations

from .anomalies import anomalies, anomaly_scores
from .attempts import Reliability, latency, reliability
from .billing import billed_events_digest, invoice_lines
from .breakers import breaker_open_time, breaker_transitions
from .forecast import SpendForecast, month_end_forecast, month_end_forecasts
from .forecast_check import forecast_backtest, forecast_coverage
from .kpis import KPIS, compare
from .periods import MAX_RANGE_DAYS, day_range, month_range, parse_day, previous_period
from .series import by_channel, daily, monthly
from .totals import (
    DEFAULT_EVENTS_LIMIT,
    MAX_EVENTS_LIMIT,
    TOP_AGENTS,
    ZERO,
    Rollup,
    by_tenant,
    events,
    rollup,
    rollup_from_events,
)

__all__ = [
    "DEFAULT_EVENTS_LIMIT",
    "KPIS",
    "MAX_EVENTS_LIMIT",
    "MAX_RANGE_DAYS",
    "TOP_AGENTS",
    "ZERO",
    "Reliability",
    "Rollup",
    "SpendForecast",
    "anomalies",
    "anomaly_scores",
    "billed_events_digest",
    "breaker_open_time",
    "breaker_transitions",
    "by_channel",
    "by_tenant",
    "compare",
    "daily",
    "day_range",
    "events",
    "forecast_backtest",
    "forecast_coverage",
    "invoice_lines",
    "latency",
    "month_end_forecast",
    "month_end_forecasts",
    "month_range",
    "monthly",
    "parse_day",
    "previous_period",
    "reliability",
    "rollup",
    "rollup_from_events",
]

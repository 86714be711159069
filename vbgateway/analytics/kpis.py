"""Period against period: the KPIs of a range next to those of the range of equal length before it.

The usage report's KPI tiles (value, change, previous value) come from here.
The KPIs draw on billed usage and on the attempt log, which is why this sits
on top of both; the previous period is ``periods.previous_period``.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pandas as pd

from . import aggregated
from .attempts import Reliability, reliability
from .periods import day_range, previous_period, tenant_scope

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["KPIS", "compare"]

_ZERO = Decimal(0)

KPIS: tuple[tuple[str, str, str, str], ...] = (
    # key, label, unit, which direction is good
    ("cost_usd", "Cost", "usd", "neutral"),
    ("replies", "Billed replies", "count", "up"),
    ("sessions", "Sessions", "count", "up"),
    ("tokens_total", "Tokens", "count", "neutral"),
    ("cost_per_reply_usd", "Cost per reply", "usd", "down"),
    ("p95_latency_ms", "p95 latency", "ms", "down"),
    ("failure_rate", "Failed requests", "ratio", "down"),
    ("fallback_rate", "Fallback rate", "ratio", "down"),
    ("retry_rate", "Retry rate", "ratio", "down"),
)


def _kpis(gw: Gateway, tenant_id: str | None, start: date, end: date,
          known: Reliability | None = None) -> dict[str, Decimal]:
    lower, upper = day_range(start, end)
    where, params = tenant_scope(tenant_id)
    usage = (aggregated.kpi_row(gw, tenant_id, lower, upper) if tenant_id is not None else gw.sql(f"""
        SELECT count(*) AS replies, count(DISTINCT session_id) AS sessions,
               coalesce(sum(tokens_in) + sum(tokens_out), 0)::BIGINT AS tokens_total,
               coalesce(sum(cost_usd), 0)::DECIMAL(38, 10) AS cost_usd
        FROM usage_events WHERE {where} AND created_at >= ? AND created_at < ?""", params + [lower, upper])).iloc[0]
    p95 = gw.sql(f"""SELECT quantile_cont(latency_ms, 0.95) AS p95 FROM provider_call_events
                     WHERE {where} AND created_at >= ? AND created_at < ?""", params + [lower, upper]).p95.iloc[0]
    rel = (known or reliability(gw, tenant_id, start, end)).summary
    replies, cost = int(usage.replies), Decimal(usage.cost_usd)
    return {
        "cost_usd": cost, "replies": Decimal(replies), "sessions": Decimal(int(usage.sessions)),
        "tokens_total": Decimal(int(usage.tokens_total)),
        "cost_per_reply_usd": (cost / replies).quantize(Decimal("1e-10")) if replies else _ZERO,
        "p95_latency_ms": _ZERO if pd.isna(p95) else Decimal(str(round(float(p95), 1))),
        **{k: Decimal(str(round(rel[k], 6))) for k in ("failure_rate", "fallback_rate", "retry_rate")},
    }


def compare(gw: Gateway, tenant_id: str | None, start: object, end: object, *,
            current: Reliability | None = None) -> pd.DataFrame:
    """Each KPI of the period against the previous period of equal length.

    Columns: kpi, label, unit, good (up/down/neutral), current, previous,
    change (exact Decimals) and change_pct (float; NaN when the previous value is 0).
    ``current``: the period's ``reliability`` if the caller has it already (it is the costly part).
    """
    first, last = (d.date() for d in day_range(start, end))
    last = last - timedelta(days=1)
    now = _kpis(gw, tenant_id, first, last, current)
    before = _kpis(gw, tenant_id, *previous_period(first, last))
    rows = []
    for key, label, unit, good in KPIS:
        cur, prev = now[key], before[key]
        pct = float((cur - prev) / prev * 100) if prev else float("nan")
        rows.append({"kpi": key, "label": label, "unit": unit, "good": good, "current": cur, "previous": prev,
                     "change": cur - prev, "change_pct": pct})
    return pd.DataFrame(rows)

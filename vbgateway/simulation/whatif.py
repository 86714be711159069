"""What-if pricing: the same usage, billed under another price table.

Tokens do not depend on the price, so re-pricing needs no new run: input
and output tokens per tenant and vendor times the other rates, exactly (a
rate has at most 4 places, so tokens x rate / 1,000,000 never rounds). Works
on a simulation result (from its rows) or on any database's
``usage_events``, simulated or real. A price table with several versions of
a provider's prices bills each reply at the version in effect when it was
billed (for a simulation's rows: when the message was sent).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from ..gateway import Gateway
from ..pricing import BEGINNING, PriceTable
from .results import SimulationResult

__all__ = ["TOTAL_LABEL", "reprice", "usage_by_tenant"]

TOTAL_LABEL = "(all tenants)"
_UNIT = Decimal(1).scaleb(-10)


def usage_by_tenant(source: SimulationResult | Gateway | str | Path,
                    periods: list[datetime] | None = None) -> pd.DataFrame:
    """tenant, provider, replies, tokens, tokens_in, tokens_out, cost_usd (as billed): the input of ``reprice``.

    With ``periods`` (ascending instants) a row per tenant, provider and
    ``period``: how many of those instants had passed when the reply was billed.
    """
    starts = periods or []
    if isinstance(source, SimulationResult):
        ok = source.rows[source.rows.outcome == "ok"]
        keys = ["tenant", "vendor_used"]
        if starts:
            ok = ok.assign(period=_period_of(ok.sent_at, starts))
            keys.append("period")
        grouped = ok.groupby(keys, observed=True)
        table = pd.DataFrame({"replies": grouped.size(),
                              "tokens": grouped.tokens_in.sum() + grouped.tokens_out.sum(),
                              "tokens_in": grouped.tokens_in.sum(), "tokens_out": grouped.tokens_out.sum(),
                              "cost_units": grouped.cost_units.sum()}).reset_index()
        table = table.rename(columns={"vendor_used": "provider"})
        table["cost_usd"] = [Decimal(int(u)) * _UNIT for u in table.cost_units]
        table["tenant"] = table.tenant.astype(str)
        table["provider"] = table.provider.astype(str)
        return table.drop(columns="cost_units")
    if isinstance(source, Gateway):
        period = "len(list_filter(?::TIMESTAMPTZ[], lambda b: b <= u.created_at)) AS period," if starts else ""
        frame = source.sql(f"""
            SELECT t.name AS tenant, u.provider, {period} count(*) AS replies,
                   sum(u.tokens_in + u.tokens_out)::BIGINT AS tokens, sum(u.tokens_in)::BIGINT AS tokens_in,
                   sum(u.tokens_out)::BIGINT AS tokens_out, sum(u.cost_usd)::DECIMAL(38, 10) AS cost_usd
            FROM usage_events u JOIN tenants t ON t.id = u.tenant_id
            GROUP BY ALL ORDER BY ALL""", [starts] if starts else None)
        frame["cost_usd"] = [Decimal(str(v)) for v in frame.cost_usd]
        return frame
    from ..lake import open_source  # a database file, or a lake of Parquet files

    with open_source(source) as gw:
        return usage_by_tenant(gw, periods)


def _period_of(times: pd.Series, starts: list[datetime]) -> list[int]:
    instants = pd.DatetimeIndex(starts)
    return list(instants.searchsorted(pd.DatetimeIndex(times), side="right"))


def reprice(source: SimulationResult | Gateway | str | Path,
            prices: PriceTable | Mapping[str, Any]) -> pd.DataFrame:
    """Per tenant (and a total row): cost as billed, cost under ``prices``, the difference."""
    table = prices if isinstance(prices, PriceTable) else PriceTable(prices)
    starts = sorted({r.effective_from for p in table.providers for r in table.versions(p)} - {BEGINNING})
    usage = usage_by_tenant(source, starts or None)
    if starts:
        moments = [BEGINNING, *starts]
        rates = [table.rates_at(p, moments[int(k)]) for p, k in zip(usage.provider, usage.period, strict=True)]
    else:
        rates = [table.rates_at(p) for p in usage.provider]
    usage["whatif_usd"] = [r.cost(int(i), int(o)) for r, i, o in zip(rates, usage.tokens_in, usage.tokens_out,
                                                                       strict=True)]
    per_tenant = []
    for tenant, group in usage.groupby("tenant", sort=True):
        per_tenant.append(_line(str(tenant), group))
    if per_tenant:
        per_tenant.append(_line(TOTAL_LABEL, usage))
    return pd.DataFrame(per_tenant, columns=["tenant", "replies", "tokens", "cost_usd", "whatif_cost_usd",
                                             "difference_usd", "difference_pct"])


def _line(tenant: str, group: pd.DataFrame) -> dict[str, Any]:
    actual = sum(group.cost_usd, Decimal(0))
    whatif = sum(group.whatif_usd, Decimal(0)).quantize(_UNIT)
    return {"tenant": tenant, "replies": int(group.replies.sum()), "tokens": int(group.tokens.sum()),
            "cost_usd": actual, "whatif_cost_usd": whatif, "difference_usd": whatif - actual,
            "difference_pct": float((whatif - actual) / actual * 100) if actual else None}

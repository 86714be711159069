"""What-if pricing: the same usage, billed under another price table.

Tokens do not depend on the price, so re-pricing needs no new run: tokens
per tenant and vendor times the other price, exactly (a price has at most 7
places, so tokens x price / 1000 never rounds). Works on a simulation result
(from its rows) or on any database's ``usage_events``, simulated or real.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from ..gateway import Gateway
from ..pricing import PriceTable
from .results import SimulationResult

__all__ = ["TOTAL_LABEL", "reprice", "usage_by_tenant"]

TOTAL_LABEL = "(all tenants)"
_UNIT = Decimal(1).scaleb(-10)


def usage_by_tenant(source: SimulationResult | Gateway | str | Path) -> pd.DataFrame:
    """tenant, provider, replies, tokens, cost_usd (as billed): the input of ``reprice``."""
    if isinstance(source, SimulationResult):
        ok = source.rows[source.rows.outcome == "ok"]
        grouped = ok.groupby(["tenant", "vendor_used"], observed=True)
        table = pd.DataFrame({"replies": grouped.size(),
                              "tokens": grouped.tokens_in.sum() + grouped.tokens_out.sum(),
                              "cost_units": grouped.cost_units.sum()}).reset_index()
        table = table.rename(columns={"vendor_used": "provider"})
        table["cost_usd"] = [Decimal(int(u)) * _UNIT for u in table.cost_units]
        table["tenant"] = table.tenant.astype(str)
        table["provider"] = table.provider.astype(str)
        return table.drop(columns="cost_units")
    if isinstance(source, Gateway):
        frame = source.sql("""
            SELECT t.name AS tenant, u.provider, count(*) AS replies,
                   sum(u.tokens_in + u.tokens_out)::BIGINT AS tokens, sum(u.cost_usd)::DECIMAL(38, 10) AS cost_usd
            FROM usage_events u JOIN tenants t ON t.id = u.tenant_id
            GROUP BY ALL ORDER BY tenant, provider""")
        frame["cost_usd"] = [Decimal(str(v)) for v in frame.cost_usd]
        return frame
    from ..lake import open_source  # a database file, or a lake of Parquet files

    with open_source(source) as gw:
        return usage_by_tenant(gw)


def reprice(source: SimulationResult | Gateway | str | Path,
            prices: PriceTable | Mapping[str, Any]) -> pd.DataFrame:
    """Per tenant (and a total row): cost as billed, cost under ``prices``, the difference."""
    table = prices if isinstance(prices, PriceTable) else PriceTable(prices)
    usage = usage_by_tenant(source)
    pairs = zip(usage.tokens, usage.provider, strict=True)
    usage["whatif_usd"] = [Decimal(int(t)) * table.price_per_1k(p) / 1000 for t, p in pairs]
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

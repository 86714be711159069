"""What an invoice is built from: one tenant, one calendar month, every billed event.

Invoices are per tenant and per month, never "all tenants" and never an
arbitrary range, so these take a ``YYYY-MM`` month and one tenant id.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import pandas as pd

from ..errors import ValidationError
from . import aggregated
from .periods import day_range, month_range

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["billed_events_digest", "invoice_lines"]


def invoice_lines(gw: Gateway, tenant_id: str, month: object) -> pd.DataFrame:
    """One billing line per agent, provider and unit price for a calendar month.

    A price change inside the month gives the agent and provider a second line
    rather than a blended price, so every line is tokens / 1000 x unit price.
    Read from ``daily_usage``, which keeps the unit price of every reply.
    """
    if not isinstance(tenant_id, str):
        raise ValidationError("an invoice is for one tenant", details={"field": "tenant_id"})
    first, last = month_range(month)
    lower, upper = day_range(first, last)
    return aggregated.invoice_rows(gw, tenant_id, lower, upper)


def billed_events_digest(gw: Gateway, tenant_id: str, month: object) -> tuple[int, Decimal, str]:
    """(event count, exact total, SHA-256 over "id:cost" of every billed event in id order).

    Printed on the invoice so anyone can re-derive it from ``usage_events``
    and prove the statement covers exactly those events.
    """
    first, last = month_range(month)
    lower, upper = day_range(first, last)
    row = gw.sql("""
        SELECT count(*) AS n, coalesce(sum(cost_usd), 0)::DECIMAL(38, 10) AS total,
               sha256(coalesce(string_agg(id || ':' || CAST(cost_usd AS VARCHAR), chr(10) ORDER BY id), '')) AS digest
        FROM usage_events WHERE tenant_id = ? AND created_at >= ? AND created_at < ?""",
                 [tenant_id, lower, upper]).iloc[0]
    return int(row.n), Decimal(row.total), str(row.digest)

"""What an invoice is built from: one tenant, one calendar month, every billed event.

Invoices are per tenant and per month, never "all tenants" and never an
arbitrary range, so these take a ``YYYY-MM`` month and one tenant id.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import pandas as pd

from ..errors import ValidationError
from .periods import day_range, month_range

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["billed_events_digest", "invoice_lines"]


def invoice_lines(gw: Gateway, tenant_id: str, month: object) -> pd.DataFrame:
    """One billing line per agent, provider and pair of rates for a calendar month.

    A price change inside the month gives the agent and provider a second line
    rather than a blended price, so every line is tokens_in x input rate +
    tokens_out x output rate, per 1,000,000 tokens. Events billed before prices
    had two rates count both at their single rate (``usd_per_1k_tokens`` x 1000).
    Read from the events rather than ``daily_usage``: the aggregates keep one
    unit price per reply, not its pair of rates, and a line is exact to the cent.
    """
    if not isinstance(tenant_id, str):
        raise ValidationError("an invoice is for one tenant", details={"field": "tenant_id"})
    first, last = month_range(month)
    lower, upper = day_range(first, last)
    return gw.sql("""
        SELECT u.agent_id, coalesce(any_value(a.name), '(deleted agent)') AS agent_name, u.provider,
               coalesce(u.usd_per_1m_input, u.usd_per_1k_tokens * 1000)::DECIMAL(18, 4) AS usd_per_1m_input,
               coalesce(u.usd_per_1m_output, u.usd_per_1k_tokens * 1000)::DECIMAL(18, 4) AS usd_per_1m_output,
               count(*) AS replies, sum(u.tokens_in)::BIGINT AS tokens_in, sum(u.tokens_out)::BIGINT AS tokens_out,
               (sum(u.tokens_in) + sum(u.tokens_out))::BIGINT AS tokens_total,
               sum(u.cost_usd)::DECIMAL(38, 10) AS amount_usd
        FROM usage_events u LEFT JOIN agents a ON a.id = u.agent_id AND a.tenant_id = u.tenant_id
        WHERE u.tenant_id = ? AND u.created_at >= ? AND u.created_at < ?
        GROUP BY u.agent_id, u.provider, 4, 5
        ORDER BY agent_name, u.agent_id, u.provider, 4, 5""", [tenant_id, lower, upper])


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

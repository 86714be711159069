"""Series for charts and reports: cost per month, figures per day, figures per channel.

Unlike totals, a series has a row for every month, day or channel of the
period, used or not (a chart needs the zeros), so each query starts from the
full list of labels and joins the usage onto it. One tenant's series and
every cost per month come from the daily aggregates (``aggregated.py``). Time is grouped on whole
UTC days as integers (epoch microseconds // one day): calendar functions on
TIMESTAMPTZ go through ICU per row and cost several times more.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import pandas as pd

from ..errors import ValidationError
from . import aggregated
from .periods import day_range, tenant_scope

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["by_channel", "daily", "monthly"]

_ZERO = Decimal(0)
_US_PER_DAY = 86_400_000_000
_EPOCH_DAY = date(1970, 1, 1)


def monthly(gw: Gateway, tenant_id: str | None, *, months: int = 12, now: datetime | None = None) -> pd.DataFrame:
    """Cost per provider for the last ``months`` calendar months including the current one.

    Oldest first; months without usage are present with zeros; one column per
    provider the gateway knows, plus any other provider found in the data.
    """
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 120:
        raise ValidationError("months is a whole number from 1 to 120", details={"field": "months"})
    current = (now or gw.clock.now()).astimezone(UTC)
    first_year, first_month = divmod(current.year * 12 + current.month - 1 - (months - 1), 12)
    lower = datetime(first_year, first_month + 1, 1, tzinfo=UTC)
    labels = []
    for i in range(months):
        year, month = divmod(first_year * 12 + first_month + i, 12)
        labels.append(f"{year:04d}-{month + 1:02d}")
    where, params = tenant_scope(tenant_id)
    data = aggregated.monthly_rows(gw, where, params, lower)
    providers = sorted(set(gw.providers) | set(data.provider))
    table = pd.DataFrame({"month": labels})
    for provider in providers:
        costs: dict[str, Decimal] = {}
        for m, p, c in zip(data.month, data.provider, data.cost_usd, strict=True):
            if p == provider:
                costs[m] = costs.get(m, _ZERO) + Decimal(c)
        table[provider] = [costs.get(m, _ZERO) for m in labels]
    return table


def daily(gw: Gateway, tenant_id: str | None, start: object, end: object) -> pd.DataFrame:
    """One row per UTC day of the period (empty days as zeros): replies, sessions, tokens, cost."""
    lower, upper = day_range(start, end)
    if tenant_id is not None:
        return aggregated.daily_rows(gw, tenant_id, lower, upper)
    where, params = tenant_scope(tenant_id)
    first_day, end_day = (lower.date() - _EPOCH_DAY).days, (upper.date() - _EPOCH_DAY).days
    return gw.sql(f"""
        WITH days AS (SELECT range::INTEGER AS d FROM range(?, ?)),
        used AS (
            SELECT (epoch_us(created_at) // {_US_PER_DAY})::INTEGER AS d, count(*) AS replies,
                   count(DISTINCT session_id) AS sessions, sum(tokens_in) AS tokens_in,
                   sum(tokens_out) AS tokens_out, sum(cost_usd) AS cost_usd
            FROM usage_events WHERE {where} AND created_at >= ? AND created_at < ? GROUP BY 1)
        SELECT DATE '1970-01-01' + days.d AS day, coalesce(u.replies, 0)::BIGINT AS replies,
               coalesce(u.sessions, 0)::BIGINT AS sessions,
               coalesce(u.tokens_in, 0)::BIGINT AS tokens_in, coalesce(u.tokens_out, 0)::BIGINT AS tokens_out,
               (coalesce(u.tokens_in, 0) + coalesce(u.tokens_out, 0))::BIGINT AS tokens_total,
               coalesce(u.cost_usd, 0)::DECIMAL(38, 10) AS cost_usd
        FROM days LEFT JOIN used u USING (d) ORDER BY days.d""", [first_day, end_day] + params + [lower, upper])


def by_channel(gw: Gateway, tenant_id: str | None, start: object, end: object) -> pd.DataFrame:
    """Replies, sessions, tokens and cost per channel; chat, openai (the front door) and voice are always present."""
    lower, upper = day_range(start, end)
    if tenant_id is not None:
        return aggregated.by_channel_rows(gw, tenant_id, lower, upper)
    where, params = tenant_scope(tenant_id)
    return gw.sql(f"""
        WITH used AS (
            SELECT channel, count(*) AS replies, count(DISTINCT session_id) AS sessions, sum(tokens_in) AS tokens_in,
                   sum(tokens_out) AS tokens_out, sum(cost_usd) AS cost_usd
            FROM usage_events WHERE {where} AND created_at >= ? AND created_at < ? GROUP BY channel),
        channels AS (SELECT unnest(['chat', 'openai', 'voice']) AS channel UNION SELECT channel FROM used)
        SELECT c.channel, coalesce(u.replies, 0)::BIGINT AS replies, coalesce(u.sessions, 0)::BIGINT AS sessions,
               coalesce(u.tokens_in, 0)::BIGINT AS tokens_in, coalesce(u.tokens_out, 0)::BIGINT AS tokens_out,
               (coalesce(u.tokens_in, 0) + coalesce(u.tokens_out, 0))::BIGINT AS tokens_total,
               coalesce(u.cost_usd, 0)::DECIMAL(38, 10) AS cost_usd
        FROM channels c LEFT JOIN used u USING (channel) ORDER BY c.channel""", params + [lower, upper])

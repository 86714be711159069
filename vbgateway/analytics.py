"""Usage analytics: the numbers behind /v1/usage, the dashboard and the reports.

Every function reads the store through the gateway (so pending journal
records are applied first), takes a scope (one tenant id, or ``None`` for all
tenants, which only operators get) and a range of UTC calendar days with both
ends inclusive. Results are pandas DataFrames whose money columns stay exact
(Arrow-backed ``decimal128``), or small dataclasses of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd

from .errors import ValidationError

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = [
    "DEFAULT_EVENTS_LIMIT",
    "MAX_EVENTS_LIMIT",
    "MAX_RANGE_DAYS",
    "Rollup",
    "day_range",
    "events",
    "monthly",
    "parse_day",
    "rollup",
]

DEFAULT_EVENTS_LIMIT = 200
MAX_EVENTS_LIMIT = 1000
MAX_RANGE_DAYS = 3660
TOP_AGENTS = 5
ZERO = Decimal("0")


def parse_day(value: object, field: str) -> date:
    """A UTC calendar day from a ``date`` or a ``YYYY-MM-DD`` string."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValidationError(f"{field} must be a date as YYYY-MM-DD", details={"field": field, "value": str(value)[:40]})


def day_range(start: object, end: object) -> tuple[datetime, datetime]:
    """[start 00:00, end+1 00:00) in UTC; ``start`` after ``end`` is a VALIDATION_ERROR."""
    first, last = parse_day(start, "from"), parse_day(end, "to")
    if first > last:
        raise ValidationError("'from' must not be after 'to'", details={"from": str(first), "to": str(last)})
    if (last - first).days > MAX_RANGE_DAYS:
        raise ValidationError(f"a range spans at most {MAX_RANGE_DAYS} days", details={"from": str(first), "to": str(last)})
    lower = datetime(first.year, first.month, first.day, tzinfo=timezone.utc)
    upper = datetime(last.year, last.month, last.day, tzinfo=timezone.utc) + timedelta(days=1)
    return lower, upper


def _scope(tenant_id: str | None, alias: str = "") -> tuple[str, list[Any]]:
    column = f"{alias}.tenant_id" if alias else "tenant_id"
    return (f"{column} = ?", [tenant_id]) if tenant_id is not None else ("TRUE", [])


@dataclass(frozen=True)
class Rollup:
    """Totals, per-provider figures and the costliest agents of a period."""

    start: date
    end: date
    totals: dict[str, Any]
    by_provider: pd.DataFrame
    top_agents: pd.DataFrame


def rollup(gw: Gateway, tenant_id: str | None, start: object, end: object, *, top: int = TOP_AGENTS) -> Rollup:
    lower, upper = day_range(start, end)
    where, params = _scope(tenant_id)
    window = [lower, upper]
    totals = gw.sql(f"""
        SELECT count(DISTINCT session_id) AS sessions,
               coalesce(sum(tokens_in), 0)::BIGINT AS tokens_in,
               coalesce(sum(tokens_out), 0)::BIGINT AS tokens_out,
               coalesce(sum(cost_usd), 0)::DECIMAL(38, 10) AS cost_usd
        FROM usage_events WHERE {where} AND created_at >= ? AND created_at < ?""", params + window)
    messages = gw.sql(f"""SELECT count(*) AS n FROM messages WHERE {where} AND created_at >= ? AND created_at < ?""",
                      params + window)
    row = totals.iloc[0]
    summary = {
        "sessions": int(row.sessions),
        "messages": int(messages.n.iloc[0]),
        "tokens_in": int(row.tokens_in),
        "tokens_out": int(row.tokens_out),
        "tokens_total": int(row.tokens_in) + int(row.tokens_out),
        "cost_usd": Decimal(row.cost_usd) if row.cost_usd is not None else ZERO,
    }
    by_provider = gw.sql(f"""
        SELECT provider, count(DISTINCT session_id) AS sessions,
               sum(tokens_in)::BIGINT AS tokens_in, sum(tokens_out)::BIGINT AS tokens_out,
               (sum(tokens_in) + sum(tokens_out))::BIGINT AS tokens_total,
               sum(cost_usd)::DECIMAL(38, 10) AS cost_usd
        FROM usage_events WHERE {where} AND created_at >= ? AND created_at < ?
        GROUP BY provider ORDER BY provider""", params + window)
    agent_where, agent_params = _scope(tenant_id, "u")
    top_agents = gw.sql(f"""
        SELECT u.agent_id, coalesce(any_value(a.name), '(deleted agent)') AS agent_name,
               count(DISTINCT u.session_id) AS sessions,
               (sum(u.tokens_in) + sum(u.tokens_out))::BIGINT AS tokens_total,
               sum(u.cost_usd)::DECIMAL(38, 10) AS cost_usd
        FROM usage_events u LEFT JOIN agents a ON a.id = u.agent_id
        WHERE {agent_where} AND u.created_at >= ? AND u.created_at < ?
        GROUP BY u.agent_id ORDER BY cost_usd DESC, u.agent_id LIMIT ?""", agent_params + window + [top])
    return Rollup(lower.date(), (upper - timedelta(days=1)).date(), summary, by_provider, top_agents)


def events(gw: Gateway, tenant_id: str | None, start: object, end: object, *,
           limit: object = DEFAULT_EVENTS_LIMIT, offset: object = 0) -> pd.DataFrame:
    """Usage events of the period, newest first, one page of ``limit`` from ``offset``."""
    lower, upper = day_range(start, end)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_EVENTS_LIMIT:
        raise ValidationError(f"limit is a whole number from 1 to {MAX_EVENTS_LIMIT}", details={"field": "limit"})
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValidationError("offset is a whole number >= 0", details={"field": "offset"})
    where, params = _scope(tenant_id)
    return gw.sql(f"""
        SELECT id, tenant_id, session_id, agent_id, provider, channel, tokens_in, tokens_out, cost_usd,
               created_at, request_id
        FROM usage_events WHERE {where} AND created_at >= ? AND created_at < ?
        ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?""", params + [lower, upper, limit, offset])


def monthly(gw: Gateway, tenant_id: str | None, *, months: int = 12, now: datetime | None = None) -> pd.DataFrame:
    """Cost per provider for the last ``months`` calendar months including the current one.

    Oldest first; months without usage are present with zeros; one column per
    provider the gateway knows, plus any other provider found in the data.
    """
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 120:
        raise ValidationError("months is a whole number from 1 to 120", details={"field": "months"})
    current = (now or gw.clock.now()).astimezone(timezone.utc)
    first_year, first_month = divmod(current.year * 12 + current.month - 1 - (months - 1), 12)
    lower = datetime(first_year, first_month + 1, 1, tzinfo=timezone.utc)
    labels = []
    for i in range(months):
        year, month = divmod(first_year * 12 + first_month + i, 12)
        labels.append(f"{year:04d}-{month + 1:02d}")
    where, params = _scope(tenant_id)
    data = gw.sql(f"""
        SELECT strftime(created_at, '%Y-%m') AS month, provider, sum(cost_usd)::DECIMAL(38, 10) AS cost_usd
        FROM usage_events WHERE {where} AND created_at >= ?
        GROUP BY ALL""", params + [lower])
    providers = sorted(set(gw.providers) | set(data.provider))
    table = pd.DataFrame({"month": labels})
    for provider in providers:
        costs = {m: Decimal(c) for m, p, c in zip(data.month, data.provider, data.cost_usd) if p == provider}
        table[provider] = [costs.get(m, ZERO) for m in labels]
    return table

"""Totals and pages of billed usage: ``GET /v1/usage/rollup``, ``GET /v1/usage/events`` and the operators' tenant list.

All three read ``usage_events``. The rollup and the event pages take any range
("all time" included), as clients of the original service ask them: their cost
follows the rows in the period, not its number of days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import ValidationError
from ..models import DEFAULT_EVENTS_LIMIT, MAX_EVENTS_LIMIT
from .periods import day_range, tenant_scope

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["DEFAULT_EVENTS_LIMIT", "MAX_EVENTS_LIMIT", "TOP_AGENTS", "ZERO", "Rollup", "by_tenant", "events",
           "rollup"]

TOP_AGENTS = 10
ZERO = Decimal(0)


@dataclass(frozen=True)
class Rollup:
    """Totals, per-provider figures and the costliest agents of a period."""

    start: date
    end: date
    totals: dict[str, Any]
    by_provider: pd.DataFrame
    top_agents: pd.DataFrame


def rollup(gw: Gateway, tenant_id: str | None, start: object, end: object, *, top: int = TOP_AGENTS) -> Rollup:
    """The figures of ``GET /v1/usage/rollup``: totals, per provider and the ``top`` costliest agents.

    One statement, one scan: GROUPING SETS give the total row, the provider rows and the agent
    rows (each with its exact distinct session count), the message count rides along as a
    scalar subquery. Per-statement overheads and further scans of the period would cost more
    than the aggregation itself.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise ValidationError("top is a whole number >= 0", details={"field": "top"})
    lower, upper = day_range(start, end, max_days=None)
    where, params = tenant_scope(tenant_id)
    window = params + [lower, upper]
    rows = gw.sql(f"""
        WITH grouped AS (
            SELECT grouping(provider) AS no_provider, grouping(agent_id) AS no_agent, provider, agent_id,
                   count(DISTINCT session_id) AS sessions,
                   coalesce(sum(tokens_in), 0)::BIGINT AS tokens_in, coalesce(sum(tokens_out), 0)::BIGINT AS tokens_out,
                   coalesce(sum(cost_usd), 0)::DECIMAL(38, 10) AS cost_usd
            FROM usage_events WHERE {where} AND created_at >= ? AND created_at < ?
            GROUP BY GROUPING SETS ((provider), (agent_id), ()))
        SELECT g.no_provider, g.no_agent, g.provider, g.sessions, g.tokens_in, g.tokens_out,
               (g.tokens_in + g.tokens_out)::BIGINT AS tokens_total, g.cost_usd, g.agent_id,
               CASE WHEN g.no_agent = 0 THEN coalesce(a.name, '(deleted agent)') END AS agent_name,
               (SELECT count(*) FROM messages WHERE {where} AND created_at >= ? AND created_at < ?) AS messages
        FROM grouped g LEFT JOIN agents a ON a.id = g.agent_id
        ORDER BY g.no_provider, g.provider, g.no_agent, g.cost_usd DESC, g.agent_id""", window + window)
    # Ordered: provider rows (by provider), agent rows (costliest first), the total row last.
    providers = int((rows["no_provider"].to_numpy() == 0).sum())
    agents = len(rows) - providers - 1
    total = {name: rows[name].iat[-1] for name in ("sessions", "messages", "tokens_in", "tokens_out", "cost_usd")}
    summary = {
        "sessions": int(total["sessions"]),
        "messages": int(total["messages"]),
        "tokens_in": int(total["tokens_in"]),
        "tokens_out": int(total["tokens_out"]),
        "tokens_total": int(total["tokens_in"]) + int(total["tokens_out"]),
        "cost_usd": Decimal(total["cost_usd"]) if total["cost_usd"] is not None else ZERO,
    }
    by_provider = rows.iloc[:providers][["provider", "sessions", "tokens_in", "tokens_out", "tokens_total", "cost_usd"]]
    top_agents = rows.iloc[providers:providers + min(top, agents)][["agent_id", "agent_name", "sessions",
                                                                     "tokens_total", "cost_usd"]]
    return Rollup(lower.date(), (upper - timedelta(microseconds=1)).date(), summary, by_provider,
                  top_agents.reset_index(drop=True))


def events(gw: Gateway, tenant_id: str | None, start: object, end: object, *,
           limit: object = DEFAULT_EVENTS_LIMIT, offset: object = 0) -> pd.DataFrame:
    """Usage events of the period, newest first, one page of ``limit`` from ``offset``."""
    lower, upper = day_range(start, end, max_days=None)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_EVENTS_LIMIT:
        raise ValidationError(f"limit is a whole number from 1 to {MAX_EVENTS_LIMIT}", details={"field": "limit"})
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValidationError("offset is a whole number >= 0", details={"field": "offset"})
    where, params = tenant_scope(tenant_id)
    return gw.sql(f"""
        SELECT id, tenant_id, session_id, agent_id, provider, channel, tokens_in, tokens_out, cost_usd,
               created_at, request_id
        FROM usage_events WHERE {where} AND created_at >= ? AND created_at < ?
        ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?""", params + [lower, upper, limit, offset])


def by_tenant(gw: Gateway, start: object, end: object, *, top: int = 20) -> pd.DataFrame:
    """Operators only: the tenants with the highest cost in the period, with their names."""
    lower, upper = day_range(start, end)
    return gw.sql("""
        SELECT u.tenant_id, coalesce(any_value(t.name), '(deleted tenant)') AS tenant_name, count(*) AS replies,
               count(DISTINCT u.session_id) AS sessions, (sum(u.tokens_in) + sum(u.tokens_out))::BIGINT AS tokens_total,
               sum(u.cost_usd)::DECIMAL(38, 10) AS cost_usd
        FROM usage_events u LEFT JOIN tenants t ON t.id = u.tenant_id
        WHERE u.created_at >= ? AND u.created_at < ?
        GROUP BY u.tenant_id ORDER BY cost_usd DESC, u.tenant_id LIMIT ?""", [lower, upper, top])

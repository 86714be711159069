"""Totals and pages of billed usage: ``GET /v1/usage/rollup``, ``GET /v1/usage/events`` and the operators' tenant list.

One tenant's rollup and the tenant list read the daily aggregates
(``aggregated.py``): their cost follows the days and groups of the period, not its
rows. The event pages read ``usage_events``. The rollup and the event pages
take any range ("all time" included), as clients of the original service ask them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from ..errors import ValidationError
from ..models import DEFAULT_EVENTS_LIMIT, MAX_EVENTS_LIMIT
from ..store.reads import to_frame
from . import aggregated
from .periods import day_range, tenant_scope

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["DEFAULT_EVENTS_LIMIT", "MAX_EVENTS_LIMIT", "TOP_AGENTS", "ZERO", "Rollup", "by_tenant", "events",
           "rollup", "rollup_from_events"]

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

    One tenant's rollup comes from the daily aggregates (``aggregated.rollup_parts``),
    and is kept until the store next changes: dashboards ask the same periods
    over and over. All tenants' (operators) comes from the events.
    """
    _check_top(top)
    lower, upper = day_range(start, end, max_days=None)
    if tenant_id is None:
        return _rollup_of(_event_rows(gw, None, lower, upper), lower, upper, top)
    kept = aggregated.cached(gw, ("rollup", tenant_id, lower, upper, top),
                             lambda: _rollup_of_parts(aggregated.rollup_parts(gw, tenant_id, lower, upper),
                                                      lower, upper, top))
    return replace(kept, totals=dict(kept.totals), by_provider=kept.by_provider.copy(),
                   top_agents=kept.top_agents.copy())


def rollup_from_events(gw: Gateway, tenant_id: str | None, start: object, end: object, *,
                       top: int = TOP_AGENTS) -> Rollup:
    """``rollup`` computed from ``usage_events`` and ``messages`` themselves (what the aggregates must equal)."""
    _check_top(top)
    lower, upper = day_range(start, end, max_days=None)
    return _rollup_of(_event_rows(gw, tenant_id, lower, upper), lower, upper, top)


def _check_top(top: object) -> None:
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise ValidationError("top is a whole number >= 0", details={"field": "top"})


def _event_rows(gw: Gateway, tenant_id: str | None, lower: datetime, upper: datetime) -> pd.DataFrame:
    """One statement, one scan: GROUPING SETS give the total row, the provider rows and the agent
    rows (each with its exact distinct session count), the message count rides along as a
    scalar subquery. Per-statement overheads and further scans of the period would cost more
    than the aggregation itself.
    """
    where, params = tenant_scope(tenant_id)
    window = params + [lower, upper]
    return gw.sql(f"""
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


_PROVIDER_COLUMNS = {"provider": pa.string(), "sessions": pa.int64(), "tokens_in": pa.int64(),
                     "tokens_out": pa.int64(), "tokens_total": pa.int64(), "cost_usd": pa.decimal128(38, 10)}
_AGENT_COLUMNS = {"agent_id": pa.string(), "agent_name": pa.string(), "sessions": pa.int64(),
                  "tokens_total": pa.int64(), "cost_usd": pa.decimal128(38, 10)}


def _frame(columns: dict[str, pa.DataType], rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """Rows as a DataFrame typed as ``gw.sql`` types a query's result (exact decimals stay Arrow-backed)."""
    values = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    table = pa.table({name: pa.array(list(v), kind) for (name, kind), v in zip(columns.items(), values, strict=True)})
    return to_frame(table)


def _rollup_of_parts(parts: aggregated.RollupParts, lower: datetime, upper: datetime, top: int) -> Rollup:
    """A ``Rollup`` from the aggregates' rows, ordered and typed as ``_rollup_of`` gives it from the events."""
    providers, agents, total = [], [], None
    for provider, agent_id, name, tokens_in, tokens_out, cost in parts.usage:
        if provider is not None:
            providers.append((provider, parts.sessions.get(("provider", provider), 0), tokens_in, tokens_out,
                              tokens_in + tokens_out, cost))
        elif agent_id is not None:
            agents.append((agent_id, name, parts.sessions.get(("agent", agent_id), 0), tokens_in + tokens_out, cost))
        else:
            total = (tokens_in, tokens_out, cost)
    assert total is not None  # the empty grouping set always gives its row
    providers.sort(key=lambda row: row[0])
    agents.sort(key=lambda row: (-row[4], row[0]))
    tokens_in, tokens_out, cost = total
    summary = {"sessions": parts.sessions.get(("tenant", ""), 0), "messages": parts.messages,
               "tokens_in": int(tokens_in), "tokens_out": int(tokens_out), "tokens_total": int(tokens_in + tokens_out),
               "cost_usd": Decimal(cost)}
    return Rollup(lower.date(), (upper - timedelta(microseconds=1)).date(), summary,
                  _frame(_PROVIDER_COLUMNS, providers), _frame(_AGENT_COLUMNS, agents[:top]))


def _rollup_of(rows: pd.DataFrame, lower: datetime, upper: datetime, top: int) -> Rollup:
    """A ``Rollup`` from its rows: provider rows (by provider), agent rows (costliest first), the total row last."""
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
    """Operators only: the tenants with the highest cost in the period, with their names (from the aggregates)."""
    lower, upper = day_range(start, end)
    return aggregated.by_tenant_rows(gw, lower, upper, top)

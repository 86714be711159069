"""Usage figures of one tenant from the daily aggregates: the same frames the events give, in far fewer rows.

``daily_usage``, ``daily_messages`` and ``daily_sessions`` (``store/aggregates.py``)
are written in the transaction that writes the events, so every answer here
equals the one the events give, to the cent and to the session (the tests
compare both). Periods are whole UTC days (``periods.day_range``), which is
exactly what a row of the aggregates covers: no partial day at either edge.

Only one-tenant questions are answered here. A session counted across
tenants needs every tenant's sessions at once, which ``daily_sessions``
(per tenant) does not hold; operators' all-tenant figures come from the
events as before, except the cost per month, which is a plain sum.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import pandas as pd

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["RollupParts", "by_channel_rows", "by_tenant_rows", "cached", "daily_rows", "days_of",
           "kpi_row", "monthly_rows", "rollup_parts"]

T = TypeVar("T")
# Sessions of days ?..?: each session once, on its first day of use inside the range (``DailySessionsRow``).
_SESSIONS_IN_RANGE = "day BETWEEN ? AND ? AND (gap_days = 0 OR day - gap_days < ?)"


def days_of(lower: datetime, upper: datetime) -> tuple[date, date]:
    """The first and last UTC day of a ``day_range`` (its upper end is exclusive)."""
    return lower.date(), (upper - timedelta(microseconds=1)).date()


def cached(gw: Gateway, key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, or the answer kept since the store last changed (``store/answers.py``)."""
    return gw.store.answers.get(key, compute)


class RollupParts(NamedTuple):
    """What a rollup is made of, as plain rows: usage per provider / agent / total, sessions, messages."""

    usage: list[tuple[Any, ...]]  # (provider or None, agent_id or None, agent_name, tokens_in, tokens_out, cost)
    sessions: dict[tuple[str, str], int]  # (dimension, value) -> distinct sessions
    messages: int


def rollup_parts(gw: Gateway, tenant_id: str, lower: datetime, upper: datetime) -> RollupParts:
    """One small statement of plain rows (no DataFrame): usage, then session counts, then the messages.

    GROUPING SETS give the provider rows, the agent rows and the total row
    (``provider`` and ``agent_id`` both NULL), so every sum is DuckDB's exact
    DECIMAL. Session counts and the message count ride along as rows of kind
    ``s`` and ``m``: one statement costs less than three at this size.
    """
    first, last = days_of(lower, upper)
    days = [tenant_id, first, last]
    rows = gw.store.read_rows(f"""
        SELECT 'u' AS kind, u.provider, u.agent_id,
               CASE WHEN u.agent_id IS NOT NULL THEN coalesce(a.name, '(deleted agent)') END AS name,
               u.tokens_in, u.tokens_out, u.cost_usd
        FROM (SELECT provider, agent_id, coalesce(sum(tokens_in), 0)::BIGINT AS tokens_in,
                     coalesce(sum(tokens_out), 0)::BIGINT AS tokens_out,
                     coalesce(sum(cost_usd), 0)::DECIMAL(38, 10) AS cost_usd
              FROM daily_usage WHERE tenant_id = ? AND day BETWEEN ? AND ?
              GROUP BY GROUPING SETS ((provider), (agent_id), ())) u
        LEFT JOIN agents a ON a.id = u.agent_id
        UNION ALL
        SELECT 's', dimension, value, NULL, sum(sessions)::BIGINT, NULL, NULL FROM daily_sessions
        WHERE tenant_id = ? AND dimension IN ('tenant', 'provider', 'agent') AND {_SESSIONS_IN_RANGE} GROUP BY ALL
        UNION ALL
        SELECT 'm', NULL, NULL, NULL, coalesce(sum(messages), 0)::BIGINT, NULL, NULL FROM daily_messages
        WHERE tenant_id = ? AND day BETWEEN ? AND ?""", days + days + [first] + days)
    usage = [row[1:] for row in rows if row[0] == "u"]
    sessions = {(row[1], row[2]): int(row[4]) for row in rows if row[0] == "s"}
    messages = next(int(row[4]) for row in rows if row[0] == "m")
    return RollupParts(usage, sessions, messages)


def monthly_rows(gw: Gateway, where: str, params: list[object], lower: datetime) -> pd.DataFrame:
    """Cost per calendar month ("YYYY-MM") and provider from ``lower`` on (a plain sum: any scope)."""
    return gw.sql(f"""
        SELECT strftime(day, '%Y-%m') AS month, provider, sum(cost_usd)::DECIMAL(38, 10) AS cost_usd
        FROM daily_usage WHERE {where} AND day >= ? GROUP BY ALL""", params + [lower.date()])


def daily_rows(gw: Gateway, tenant_id: str, lower: datetime, upper: datetime) -> pd.DataFrame:
    """``series.daily`` of one tenant: a row per day, empty days as zeros."""
    first, last = days_of(lower, upper)
    return gw.sql("""
        WITH days AS (SELECT range::DATE AS day FROM range(?::DATE, ?::DATE + 1, INTERVAL 1 DAY)),
        u AS (SELECT day, sum(replies) AS replies, sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out,
                     sum(cost_usd) AS cost_usd
              FROM daily_usage WHERE tenant_id = ? AND day BETWEEN ? AND ? GROUP BY day),
        s AS (SELECT day, sum(sessions) AS sessions FROM daily_sessions
              WHERE tenant_id = ? AND dimension = 'tenant' AND day BETWEEN ? AND ? GROUP BY day)
        SELECT days.day, coalesce(u.replies, 0)::BIGINT AS replies, coalesce(s.sessions, 0)::BIGINT AS sessions,
               coalesce(u.tokens_in, 0)::BIGINT AS tokens_in, coalesce(u.tokens_out, 0)::BIGINT AS tokens_out,
               (coalesce(u.tokens_in, 0) + coalesce(u.tokens_out, 0))::BIGINT AS tokens_total,
               coalesce(u.cost_usd, 0)::DECIMAL(38, 10) AS cost_usd
        FROM days LEFT JOIN u USING (day) LEFT JOIN s USING (day) ORDER BY days.day""",
                  [first, last, tenant_id, first, last, tenant_id, first, last])


def by_channel_rows(gw: Gateway, tenant_id: str, lower: datetime, upper: datetime) -> pd.DataFrame:
    """``series.by_channel`` of one tenant: chat, openai and voice always, any other channel used."""
    first, last = days_of(lower, upper)
    days = [tenant_id, first, last]
    return gw.sql(f"""
        WITH used AS (
            SELECT channel, sum(replies) AS replies, sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out,
                   sum(cost_usd) AS cost_usd
            FROM daily_usage WHERE tenant_id = ? AND day BETWEEN ? AND ? GROUP BY channel),
        s AS (SELECT value AS channel, sum(sessions) AS sessions FROM daily_sessions
              WHERE tenant_id = ? AND dimension = 'channel' AND {_SESSIONS_IN_RANGE} GROUP BY ALL),
        channels AS (SELECT unnest(['chat', 'openai', 'voice']) AS channel UNION SELECT channel FROM used)
        SELECT c.channel, coalesce(u.replies, 0)::BIGINT AS replies, coalesce(s.sessions, 0)::BIGINT AS sessions,
               coalesce(u.tokens_in, 0)::BIGINT AS tokens_in, coalesce(u.tokens_out, 0)::BIGINT AS tokens_out,
               (coalesce(u.tokens_in, 0) + coalesce(u.tokens_out, 0))::BIGINT AS tokens_total,
               coalesce(u.cost_usd, 0)::DECIMAL(38, 10) AS cost_usd
        FROM channels c LEFT JOIN used u USING (channel) LEFT JOIN s USING (channel) ORDER BY c.channel""",
                  days + days + [first])


def by_tenant_rows(gw: Gateway, lower: datetime, upper: datetime, top: int) -> pd.DataFrame:
    """``totals.by_tenant``: the tenants with the highest cost, each one's sessions counted within it."""
    first, last = days_of(lower, upper)
    return gw.sql(f"""
        WITH u AS (
            SELECT tenant_id, sum(replies) AS replies, (sum(tokens_in) + sum(tokens_out))::BIGINT AS tokens_total,
                   sum(cost_usd)::DECIMAL(38, 10) AS cost_usd
            FROM daily_usage WHERE day BETWEEN ? AND ? GROUP BY tenant_id),
        s AS (SELECT tenant_id, sum(sessions) AS sessions FROM daily_sessions
              WHERE dimension = 'tenant' AND {_SESSIONS_IN_RANGE} GROUP BY tenant_id)
        SELECT u.tenant_id, coalesce(t.name, '(deleted tenant)') AS tenant_name, u.replies::BIGINT AS replies,
               coalesce(s.sessions, 0)::BIGINT AS sessions, u.tokens_total, u.cost_usd
        FROM u LEFT JOIN s USING (tenant_id) LEFT JOIN tenants t ON t.id = u.tenant_id
        ORDER BY u.cost_usd DESC, u.tenant_id LIMIT ?""", [first, last, first, last, first, top])


def kpi_row(gw: Gateway, tenant_id: str, lower: datetime, upper: datetime) -> pd.DataFrame:
    """One row: replies, sessions, tokens_total and cost_usd of one tenant's period (for ``kpis``)."""
    first, last = days_of(lower, upper)
    days = [tenant_id, first, last]
    return gw.sql(f"""
        SELECT coalesce(sum(replies), 0)::BIGINT AS replies,
               (SELECT coalesce(sum(sessions), 0) FROM daily_sessions
                WHERE tenant_id = ? AND dimension = 'tenant' AND {_SESSIONS_IN_RANGE})::BIGINT AS sessions,
               coalesce(sum(tokens_in) + sum(tokens_out), 0)::BIGINT AS tokens_total,
               coalesce(sum(cost_usd), 0)::DECIMAL(38, 10) AS cost_usd
        FROM daily_usage WHERE tenant_id = ? AND day BETWEEN ? AND ?""", days + [first] + days)


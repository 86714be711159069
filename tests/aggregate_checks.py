"""What the daily aggregates must equal, computed from the events alone (shared by the aggregate tests).

The references are written independently of ``store/aggregates.py``: days by
``CAST(created_at AS DATE)`` in UTC, distinct sessions by ``count(DISTINCT ...)``
over the events of every range of days, so a mistake in the aggregates'
arithmetic cannot hide in its own reference.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd

from vbgateway import Gateway, analytics
from vbgateway.analytics import totals

__all__ = ["assert_aggregates_match_events", "assert_tenant_answers_match_events", "event_days"]

DIMENSIONS = {"tenant": "''", "agent": "agent_id", "provider": "provider", "channel": "channel"}


def _rows(gw: Gateway, sql: str) -> set[tuple]:
    return set(gw.store.query_rows(sql))


def event_days(gw: Gateway) -> list[date]:
    """Every UTC day with usage, plus the day before the first and after the last."""
    days = sorted(d for (d,) in gw.store.query_rows("SELECT DISTINCT CAST(created_at AS DATE) FROM usage_events"))
    return [days[0] - timedelta(days=1), *days, days[-1] + timedelta(days=1)] if days else []


def assert_aggregates_match_events(gw: Gateway) -> None:
    """Every aggregate row equals what the events give; sessions over every range of used days, exactly."""
    assert _rows(gw, """SELECT tenant_id, day, agent_id, provider, channel, usd_per_1k_tokens, replies, tokens_in,
                               tokens_out, cost_usd FROM daily_usage""") == _rows(gw, """
        SELECT tenant_id, CAST(created_at AS DATE), agent_id, provider, channel, usd_per_1k_tokens, count(*),
               sum(tokens_in), sum(tokens_out), sum(cost_usd) FROM usage_events GROUP BY ALL""")
    assert _rows(gw, "SELECT tenant_id, day, channel, messages FROM daily_messages") == _rows(gw, """
        SELECT tenant_id, CAST(created_at AS DATE), channel, count(*) FROM messages GROUP BY ALL""")
    assert _rows(gw, "SELECT * FROM session_days") == _rows(gw, """
        SELECT DISTINCT tenant_id, session_id, CAST(created_at AS DATE), agent_id, provider, channel FROM usage_events""")
    assert gw.store.query_rows("SELECT count(*) FROM daily_sessions WHERE sessions < 0") == [(0,)]
    days = event_days(gw)
    if not days:
        assert gw.store.query_rows("SELECT count(*) FROM daily_sessions WHERE sessions <> 0") == [(0,)]
        return
    ranges = ", ".join(f"(DATE '{a}', DATE '{b}')" for i, a in enumerate(days) for b in days[i:])
    for dimension, column in DIMENSIONS.items():
        expected = _rows(gw, f"""
            SELECT r.a, r.b, u.tenant_id, {column} AS value, count(DISTINCT u.session_id)
            FROM (VALUES {ranges}) r(a, b) JOIN usage_events u
              ON CAST(u.created_at AS DATE) BETWEEN r.a AND r.b GROUP BY ALL""")
        found = _rows(gw, f"""
            SELECT r.a, r.b, s.tenant_id, s.value, sum(s.sessions)
            FROM (VALUES {ranges}) r(a, b) JOIN daily_sessions s
              ON s.dimension = '{dimension}' AND s.day BETWEEN r.a AND r.b AND (s.gap_days = 0 OR s.day - s.gap_days < r.a)
            GROUP BY ALL HAVING sum(s.sessions) <> 0""")
        assert found == expected, f"distinct sessions per {dimension} differ"


def _same_rollup(a: analytics.Rollup, b: analytics.Rollup) -> None:
    assert (a.start, a.end, a.totals) == (b.start, b.end, b.totals)
    pd.testing.assert_frame_equal(a.by_provider.reset_index(drop=True), b.by_provider.reset_index(drop=True))
    pd.testing.assert_frame_equal(a.top_agents.reset_index(drop=True), b.top_agents.reset_index(drop=True))


def _events_frame(gw: Gateway, sql: str, params: list) -> pd.DataFrame:
    return gw.sql(sql, params)


def _rate(per_1m: Decimal | None, per_1k: Decimal) -> Decimal:
    return (per_1m if per_1m is not None else per_1k * 1000).quantize(Decimal("0.0001"), ROUND_HALF_UP)


def _invoice_lines(gw: Gateway, tenant_id: str, lower: object, upper: object) -> list[dict]:
    """An invoice's lines summed in Python from the month's events: one per agent, provider and pair of rates."""
    names = dict(gw.store.query_rows("SELECT id, name FROM agents WHERE tenant_id = ?", [tenant_id]))
    sums: dict[tuple, list] = {}
    for agent_id, provider, per_in, per_out, per_1k, tokens_in, tokens_out, cost in gw.store.query_rows(
            """SELECT agent_id, provider, usd_per_1m_input, usd_per_1m_output, usd_per_1k_tokens, tokens_in, tokens_out,
                      cost_usd FROM usage_events WHERE tenant_id = ? AND created_at >= ? AND created_at < ?""",
            [tenant_id, lower, upper]):
        line = sums.setdefault((agent_id, provider, _rate(per_in, per_1k), _rate(per_out, per_1k)), [0, 0, 0, 0])
        for i, value in enumerate((1, tokens_in, tokens_out, cost)):
            line[i] += value
    lines = [{"agent_id": agent_id, "agent_name": names.get(agent_id, "(deleted agent)"), "provider": provider,
              "usd_per_1m_input": rate_in, "usd_per_1m_output": rate_out, "replies": replies, "tokens_in": tokens_in,
              "tokens_out": tokens_out, "tokens_total": tokens_in + tokens_out, "amount_usd": cost}
             for (agent_id, provider, rate_in, rate_out), (replies, tokens_in, tokens_out, cost) in sums.items()]
    return sorted(lines, key=lambda line: (line["agent_name"], line["agent_id"], line["provider"],
                                           line["usd_per_1m_input"], line["usd_per_1m_output"]))


def assert_tenant_answers_match_events(gw: Gateway, tenant_id: str, start: date, end: date) -> None:
    """Every answer read from the aggregates equals the same answer computed from the events."""
    for top in (10, 1):
        _same_rollup(analytics.rollup(gw, tenant_id, start, end, top=top),
                     totals.rollup_from_events(gw, tenant_id, start, end, top=top))
    lower, upper = analytics.day_range(start, end)
    window = [tenant_id, lower, upper]
    daily = _events_frame(gw, """
        WITH days AS (SELECT range::DATE AS day FROM range(?::DATE, ?::DATE + 1, INTERVAL 1 DAY)),
        used AS (SELECT CAST(created_at AS DATE) AS day, count(*) AS replies, count(DISTINCT session_id) AS sessions,
                        sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out, sum(cost_usd) AS cost_usd
                 FROM usage_events WHERE tenant_id = ? AND created_at >= ? AND created_at < ? GROUP BY 1)
        SELECT days.day, coalesce(u.replies, 0)::BIGINT AS replies, coalesce(u.sessions, 0)::BIGINT AS sessions,
               coalesce(u.tokens_in, 0)::BIGINT AS tokens_in, coalesce(u.tokens_out, 0)::BIGINT AS tokens_out,
               (coalesce(u.tokens_in, 0) + coalesce(u.tokens_out, 0))::BIGINT AS tokens_total,
               coalesce(u.cost_usd, 0)::DECIMAL(38, 10) AS cost_usd
        FROM days LEFT JOIN used u USING (day) ORDER BY days.day""", [start, end, *window])
    pd.testing.assert_frame_equal(analytics.daily(gw, tenant_id, start, end), daily)
    channels = _events_frame(gw, """
        WITH used AS (
            SELECT channel, count(*) AS replies, count(DISTINCT session_id) AS sessions, sum(tokens_in) AS tokens_in,
                   sum(tokens_out) AS tokens_out, sum(cost_usd) AS cost_usd
            FROM usage_events WHERE tenant_id = ? AND created_at >= ? AND created_at < ? GROUP BY channel),
        channels AS (SELECT unnest(['chat', 'openai', 'voice']) AS channel UNION SELECT channel FROM used)
        SELECT c.channel, coalesce(u.replies, 0)::BIGINT AS replies, coalesce(u.sessions, 0)::BIGINT AS sessions,
               coalesce(u.tokens_in, 0)::BIGINT AS tokens_in, coalesce(u.tokens_out, 0)::BIGINT AS tokens_out,
               (coalesce(u.tokens_in, 0) + coalesce(u.tokens_out, 0))::BIGINT AS tokens_total,
               coalesce(u.cost_usd, 0)::DECIMAL(38, 10) AS cost_usd
        FROM channels c LEFT JOIN used u USING (channel) ORDER BY c.channel""", window)
    pd.testing.assert_frame_equal(analytics.by_channel(gw, tenant_id, start, end), channels)
    kpis = analytics.compare(gw, tenant_id, start, end)
    usage = _events_frame(gw, """
        SELECT count(*) AS replies, count(DISTINCT session_id) AS sessions,
               coalesce(sum(tokens_in) + sum(tokens_out), 0) AS tokens_total, coalesce(sum(cost_usd), 0) AS cost_usd
        FROM usage_events WHERE tenant_id = ? AND created_at >= ? AND created_at < ?""", window).iloc[0]
    current = dict(zip(kpis.kpi, kpis.current, strict=True))
    assert [current[k] for k in ("replies", "sessions", "tokens_total", "cost_usd")] == [
        int(usage.replies), int(usage.sessions), int(usage.tokens_total), usage.cost_usd]
    month = f"{start:%Y-%m}"
    first, last = analytics.month_range(month)
    m_lower, m_upper = analytics.day_range(first, last)
    lines = analytics.invoice_lines(gw, tenant_id, month).to_dict("records")
    assert lines == _invoice_lines(gw, tenant_id, m_lower, m_upper)
    tenants = _events_frame(gw, """
        SELECT u.tenant_id, coalesce(any_value(t.name), '(deleted tenant)') AS tenant_name, count(*) AS replies,
               count(DISTINCT u.session_id) AS sessions, (sum(u.tokens_in) + sum(u.tokens_out))::BIGINT AS tokens_total,
               sum(u.cost_usd)::DECIMAL(38, 10) AS cost_usd
        FROM usage_events u LEFT JOIN tenants t ON t.id = u.tenant_id
        WHERE u.created_at >= ? AND u.created_at < ?
        GROUP BY u.tenant_id ORDER BY cost_usd DESC, u.tenant_id LIMIT 20""", [lower, upper])
    pd.testing.assert_frame_equal(analytics.by_tenant(gw, start, end), tenants)

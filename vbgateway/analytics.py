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
from .models import DEFAULT_EVENTS_LIMIT, MAX_EVENTS_LIMIT

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = [
    "DEFAULT_EVENTS_LIMIT",
    "KPIS",
    "MAX_EVENTS_LIMIT",
    "MAX_RANGE_DAYS",
    "Reliability",
    "Rollup",
    "billed_events_digest",
    "by_channel",
    "by_tenant",
    "compare",
    "daily",
    "day_range",
    "events",
    "invoice_lines",
    "latency",
    "month_range",
    "monthly",
    "parse_day",
    "previous_period",
    "reliability",
    "rollup",
]

MAX_RANGE_DAYS = 3660  # for series with one row per day; totals and event pages take any range
TOP_AGENTS = 10
ZERO = Decimal("0")
_US_PER_DAY = 86_400_000_000
_EPOCH_DAY = date(1970, 1, 1)


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


def day_range(start: object, end: object, *, max_days: int | None = MAX_RANGE_DAYS) -> tuple[datetime, datetime]:
    """[start 00:00, end+1 00:00) in UTC; ``start`` after ``end`` is a VALIDATION_ERROR.

    ``max_days=None`` for queries whose cost does not grow with the number of
    days (a filtered scan), so that "all time" can be asked as 2020-01-01..2099-12-31.
    """
    first, last = parse_day(start, "from"), parse_day(end, "to")
    if first > last:
        raise ValidationError("'from' must not be after 'to'", details={"from": str(first), "to": str(last)})
    if max_days is not None and (last - first).days > max_days:
        raise ValidationError(f"a range spans at most {max_days} days", details={"from": str(first), "to": str(last)})
    lower = datetime(first.year, first.month, first.day, tzinfo=timezone.utc)
    upper = (datetime(last.year, last.month, last.day, tzinfo=timezone.utc) + timedelta(days=1) if last < date.max
             else datetime.max.replace(tzinfo=timezone.utc))  # 9999-12-31 has no next day
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
    """The figures of ``GET /v1/usage/rollup``: totals, per provider and the ``top`` costliest agents.

    One statement, one scan: GROUPING SETS give the total row, the provider rows and the agent
    rows (each with its exact distinct session count), the message count rides along as a
    scalar subquery. Per-statement overheads and the second and third scans of the period
    used to cost more than the aggregation itself.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise ValidationError("top is a whole number >= 0", details={"field": "top"})
    lower, upper = day_range(start, end, max_days=None)
    where, params = _scope(tenant_id)
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
    # Group on whole UTC days as integers (cheap), then fold days into months here: calendar
    # functions on TIMESTAMPTZ go through ICU per row and cost several times more.
    data = gw.sql(f"""
        SELECT (epoch_us(created_at) // {_US_PER_DAY})::INTEGER AS d, provider, sum(cost_usd)::DECIMAL(38, 10) AS cost_usd
        FROM usage_events WHERE {where} AND created_at >= ?
        GROUP BY ALL""", params + [lower])
    data["month"] = [(_EPOCH_DAY + timedelta(days=int(d))).strftime("%Y-%m") for d in data.d]
    providers = sorted(set(gw.providers) | set(data.provider))
    table = pd.DataFrame({"month": labels})
    for provider in providers:
        costs: dict[str, Decimal] = {}
        for m, p, c in zip(data.month, data.provider, data.cost_usd):
            if p == provider:
                costs[m] = costs.get(m, ZERO) + Decimal(c)
        table[provider] = [costs.get(m, ZERO) for m in labels]
    return table


# ---------------------------------------------------------------------------- periods


def month_range(month: object) -> tuple[date, date]:
    """First and last day of a ``YYYY-MM`` calendar month (invoices are monthly)."""
    if isinstance(month, str):
        try:
            first = date.fromisoformat(month.strip() + "-01")
        except ValueError:
            first = None
        if first is not None and len(month.strip()) == 7:
            year, mon = divmod(first.year * 12 + first.month, 12)
            return first, date(year, mon + 1, 1) - timedelta(days=1)
    raise ValidationError("month must be given as YYYY-MM", details={"field": "month", "value": str(month)[:40]})


def previous_period(start: object, end: object) -> tuple[date, date]:
    """The period of equal length that ends the day before ``start``: what KPIs are compared with."""
    lower, upper = day_range(start, end)
    length = upper - lower
    return (lower - length).date(), (lower - timedelta(days=1)).date()


# ---------------------------------------------------------------------------- series


def daily(gw: Gateway, tenant_id: str | None, start: object, end: object) -> pd.DataFrame:
    """One row per UTC day of the period (empty days as zeros): replies, sessions, tokens, cost."""
    lower, upper = day_range(start, end)
    where, params = _scope(tenant_id)
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
    """Replies, sessions, tokens and cost per channel; chat and voice are always present."""
    lower, upper = day_range(start, end)
    where, params = _scope(tenant_id)
    return gw.sql(f"""
        WITH used AS (
            SELECT channel, count(*) AS replies, count(DISTINCT session_id) AS sessions, sum(tokens_in) AS tokens_in,
                   sum(tokens_out) AS tokens_out, sum(cost_usd) AS cost_usd
            FROM usage_events WHERE {where} AND created_at >= ? AND created_at < ? GROUP BY channel),
        channels AS (SELECT unnest(['chat', 'voice']) AS channel UNION SELECT channel FROM used)
        SELECT c.channel, coalesce(u.replies, 0)::BIGINT AS replies, coalesce(u.sessions, 0)::BIGINT AS sessions,
               coalesce(u.tokens_in, 0)::BIGINT AS tokens_in, coalesce(u.tokens_out, 0)::BIGINT AS tokens_out,
               (coalesce(u.tokens_in, 0) + coalesce(u.tokens_out, 0))::BIGINT AS tokens_total,
               coalesce(u.cost_usd, 0)::DECIMAL(38, 10) AS cost_usd
        FROM channels c LEFT JOIN used u USING (channel) ORDER BY c.channel""", params + [lower, upper])


# ---------------------------------------------------------------------------- attempt log


def latency(gw: Gateway, tenant_id: str | None, start: object, end: object) -> pd.DataFrame:
    """p50 / p95 / p99 latency per provider over every try (failed tries are the tail that hurts).

    Every provider the gateway knows is listed; one without calls has
    ``attempts`` 0 and empty (NaN) percentiles rather than a misleading 0 ms.
    """
    lower, upper = day_range(start, end)
    where, params = _scope(tenant_id)
    data = gw.sql(f"""
        SELECT provider, count(*) AS attempts, count(*) FILTER (status = 'ok') AS ok_attempts,
               quantile_cont(latency_ms, 0.5) AS p50_ms, quantile_cont(latency_ms, 0.95) AS p95_ms,
               quantile_cont(latency_ms, 0.99) AS p99_ms, avg(latency_ms) AS mean_ms, max(latency_ms) AS max_ms
        FROM provider_call_events WHERE {where} AND created_at >= ? AND created_at < ?
        GROUP BY provider ORDER BY provider""", params + [lower, upper])
    missing = sorted(set(gw.providers) - set(data.provider))
    if missing:
        blank = pd.DataFrame({"provider": missing, "attempts": 0, "ok_attempts": 0})
        data = pd.concat([data, blank], ignore_index=True).sort_values("provider", ignore_index=True)
        data[["attempts", "ok_attempts"]] = data[["attempts", "ok_attempts"]].astype("int64")
    for column in ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms"):
        data[column] = data[column].astype("float64")
    return data


@dataclass(frozen=True)
class Reliability:
    """How dependable the vendors were, per request and per provider.

    ``summary`` keys: requests, replies, failed_requests, attempts, attempts_per_reply,
    retry_rate (share of requests needing more than one try), fallback_rate
    (share of replies served by a provider other than the first one tried),
    failure_rate (share of requests that got no reply), and the retry tax:
    retry_tax_attempts (failed tries), retry_tax_ms (time from a request's first
    try to its successful one, or to its end when it failed: failed tries plus
    backoff waits) and failed_attempt_ms (time inside failed tries alone).
    """

    summary: dict[str, Any]
    by_provider: pd.DataFrame
    error_codes: pd.DataFrame


def _rate(part: float, whole: float) -> float:
    return float(part) / float(whole) if whole else 0.0


def reliability(gw: Gateway, tenant_id: str | None, start: object, end: object) -> Reliability:
    """Attempts per reply, retry / fallback / failure rates, error codes and the retry tax."""
    lower, upper = day_range(start, end)
    where, params = _scope(tenant_id)
    window = params + [lower, upper]
    # Only requests with a failed try need per-request work (a reply has exactly one ok try), so the
    # costly GROUP BY request_id runs over that minority instead of over every try.
    row = gw.sql(f"""
        WITH tries AS (
            SELECT request_id, provider, status, latency_ms, epoch_ms(created_at) AS at_ms
            FROM provider_call_events WHERE {where} AND created_at >= ? AND created_at < ?),
        troubled AS (
            SELECT request_id, count(*) AS attempts, bool_or(status = 'ok') AS replied,
                   count(DISTINCT provider) AS providers, count(*) FILTER (status = 'failed') AS failed_attempts,
                   coalesce(sum(latency_ms) FILTER (status = 'failed'), 0) AS failed_ms,
                   min(at_ms) AS first_ms, min(at_ms) FILTER (status = 'ok') AS ok_ms,
                   max(at_ms + latency_ms) AS end_ms
            FROM tries WHERE request_id IN (SELECT request_id FROM tries WHERE status = 'failed')
            GROUP BY request_id),
        everything AS (SELECT count(*) AS attempts, count(*) FILTER (status = 'ok') AS replies FROM tries)
        SELECT e.replies + (SELECT count(*) FILTER (NOT replied) FROM troubled) AS requests, e.replies,
               e.attempts,
               (SELECT count(*) FILTER (attempts > 1) FROM troubled) AS retried,
               (SELECT count(*) FILTER (replied AND providers > 1) FROM troubled) AS fallbacks,
               (SELECT coalesce(sum(failed_attempts), 0) FROM troubled) AS failed_attempts,
               (SELECT coalesce(sum(failed_ms), 0) FROM troubled) AS failed_ms,
               (SELECT coalesce(sum(CASE WHEN replied THEN ok_ms - first_ms ELSE end_ms - first_ms END), 0)
                FROM troubled) AS tax_ms
        FROM everything e""", window).iloc[0]
    requests, replies = int(row.requests), int(row.replies)
    summary = {
        "requests": requests, "replies": replies, "failed_requests": requests - replies,
        "attempts": int(row.attempts), "attempts_per_reply": _rate(row.attempts, replies),
        "retry_rate": _rate(row.retried, requests), "fallback_rate": _rate(row.fallbacks, replies),
        "failure_rate": _rate(requests - replies, requests), "retry_tax_attempts": int(row.failed_attempts),
        "retry_tax_ms": int(row.tax_ms), "failed_attempt_ms": int(row.failed_ms),
    }
    by_provider = gw.sql(f"""
        SELECT provider, count(*) AS attempts, count(*) FILTER (status = 'ok') AS ok,
               count(*) FILTER (status = 'failed') AS failed, count(*) FILTER (retries > 0) AS retries,
               coalesce(sum(latency_ms) FILTER (status = 'failed'), 0)::BIGINT AS failed_ms
        FROM provider_call_events WHERE {where} AND created_at >= ? AND created_at < ?
        GROUP BY provider ORDER BY provider""", window)
    by_provider["failure_rate"] = [_rate(f, a) for f, a in zip(by_provider.failed, by_provider.attempts)]
    error_codes = gw.sql(f"""
        SELECT provider, coalesce(error_code, 'UNKNOWN') AS error_code, count(*) AS attempts,
               sum(latency_ms)::BIGINT AS latency_ms
        FROM provider_call_events WHERE {where} AND created_at >= ? AND created_at < ? AND status = 'failed'
        GROUP BY ALL ORDER BY provider, attempts DESC, error_code""", window)
    return Reliability(summary, by_provider, error_codes)


# ---------------------------------------------------------------------------- comparison

KPIS: tuple[tuple[str, str, str, str], ...] = (
    # key, label, unit, which direction is good
    ("cost_usd", "Cost", "usd", "neutral"),
    ("replies", "Billed replies", "count", "up"),
    ("sessions", "Sessions", "count", "up"),
    ("tokens_total", "Tokens", "count", "neutral"),
    ("cost_per_reply_usd", "Cost per reply", "usd", "down"),
    ("p95_latency_ms", "p95 latency", "ms", "down"),
    ("failure_rate", "Failed requests", "ratio", "down"),
    ("fallback_rate", "Fallback rate", "ratio", "down"),
    ("retry_rate", "Retry rate", "ratio", "down"),
)


def _kpis(gw: Gateway, tenant_id: str | None, start: date, end: date,
          known: Reliability | None = None) -> dict[str, Decimal]:
    lower, upper = day_range(start, end)
    where, params = _scope(tenant_id)
    usage = gw.sql(f"""
        SELECT count(*) AS replies, count(DISTINCT session_id) AS sessions,
               coalesce(sum(tokens_in) + sum(tokens_out), 0)::BIGINT AS tokens_total,
               coalesce(sum(cost_usd), 0)::DECIMAL(38, 10) AS cost_usd
        FROM usage_events WHERE {where} AND created_at >= ? AND created_at < ?""", params + [lower, upper]).iloc[0]
    p95 = gw.sql(f"""SELECT quantile_cont(latency_ms, 0.95) AS p95 FROM provider_call_events
                     WHERE {where} AND created_at >= ? AND created_at < ?""", params + [lower, upper]).p95.iloc[0]
    rel = (known or reliability(gw, tenant_id, start, end)).summary
    replies, cost = int(usage.replies), Decimal(usage.cost_usd)
    return {
        "cost_usd": cost, "replies": Decimal(replies), "sessions": Decimal(int(usage.sessions)),
        "tokens_total": Decimal(int(usage.tokens_total)),
        "cost_per_reply_usd": (cost / replies).quantize(Decimal("1e-10")) if replies else ZERO,
        "p95_latency_ms": ZERO if pd.isna(p95) else Decimal(str(round(float(p95), 1))),
        **{k: Decimal(str(round(rel[k], 6))) for k in ("failure_rate", "fallback_rate", "retry_rate")},
    }


def compare(gw: Gateway, tenant_id: str | None, start: object, end: object, *,
            current: Reliability | None = None) -> pd.DataFrame:
    """Each KPI of the period against the previous period of equal length.

    Columns: kpi, label, unit, good (up/down/neutral), current, previous,
    change (exact Decimals) and change_pct (float; NaN when the previous value is 0).
    ``current``: the period's ``reliability`` if the caller has it already (it is the costly part).
    """
    first, last = (d.date() for d in day_range(start, end))
    last = last - timedelta(days=1)
    now = _kpis(gw, tenant_id, first, last, current)
    before = _kpis(gw, tenant_id, *previous_period(first, last))
    rows = []
    for key, label, unit, good in KPIS:
        cur, prev = now[key], before[key]
        pct = float((cur - prev) / prev * 100) if prev else float("nan")
        rows.append({"kpi": key, "label": label, "unit": unit, "good": good, "current": cur, "previous": prev,
                     "change": cur - prev, "change_pct": pct})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- billing


def invoice_lines(gw: Gateway, tenant_id: str, month: object) -> pd.DataFrame:
    """One billing line per agent, provider and unit price for a calendar month.

    A price change inside the month gives the agent and provider a second line
    rather than a blended price, so every line is tokens / 1000 x unit price.
    """
    if not isinstance(tenant_id, str):
        raise ValidationError("an invoice is for one tenant", details={"field": "tenant_id"})
    first, last = month_range(month)
    lower, upper = day_range(first, last)
    return gw.sql("""
        SELECT u.agent_id, coalesce(any_value(a.name), '(deleted agent)') AS agent_name, u.provider,
               u.usd_per_1k_tokens AS unit_price_usd_per_1k, count(*) AS replies,
               sum(u.tokens_in)::BIGINT AS tokens_in, sum(u.tokens_out)::BIGINT AS tokens_out,
               (sum(u.tokens_in) + sum(u.tokens_out))::BIGINT AS tokens_total,
               sum(u.cost_usd)::DECIMAL(38, 10) AS amount_usd
        FROM usage_events u LEFT JOIN agents a ON a.id = u.agent_id AND a.tenant_id = u.tenant_id
        WHERE u.tenant_id = ? AND u.created_at >= ? AND u.created_at < ?
        GROUP BY u.agent_id, u.provider, u.usd_per_1k_tokens
        ORDER BY agent_name, u.agent_id, u.provider, unit_price_usd_per_1k""", [tenant_id, lower, upper])


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

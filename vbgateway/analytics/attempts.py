"""The attempt log: latency and dependability of the vendors, from every try the gateway made.

Billed usage says what a reply cost; ``provider_call_events`` holds every try
behind it, failed ones included, which is where latency tails, retries and
fallbacks show. These functions read only that table.

A ``skipped`` row is a provider a circuit breaker kept the gateway from
calling: it is part of its request (it makes a fallback), but it is no try:
it has no latency and counts in no attempt figure, only in ``skipped``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from .periods import day_range, tenant_scope

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["Reliability", "latency", "reliability"]


def latency(gw: Gateway, tenant_id: str | None, start: object, end: object) -> pd.DataFrame:
    """p50 / p95 / p99 latency per provider over every try (failed tries are the tail that hurts).

    Every provider the gateway knows is listed; one without calls has
    ``attempts`` 0 and empty (NaN) percentiles rather than a misleading 0 ms.
    """
    lower, upper = day_range(start, end)
    where, params = tenant_scope(tenant_id)
    data = gw.sql(f"""
        SELECT provider, count(*) AS attempts, count(*) FILTER (status = 'ok') AS ok_attempts,
               quantile_cont(latency_ms, 0.5) AS p50_ms, quantile_cont(latency_ms, 0.95) AS p95_ms,
               quantile_cont(latency_ms, 0.99) AS p99_ms, avg(latency_ms) AS mean_ms, max(latency_ms) AS max_ms
        FROM provider_call_events WHERE {where} AND created_at >= ? AND created_at < ? AND status <> 'skipped'
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
    backoff waits), failed_attempt_ms (time inside failed tries alone) and
    skipped_attempts (providers skipped by an open circuit breaker; a request
    whose every provider was skipped is a failed request).
    """

    summary: dict[str, Any]
    by_provider: pd.DataFrame
    error_codes: pd.DataFrame


def _rate(part: float, whole: float) -> float:
    return float(part) / float(whole) if whole else 0.0


def reliability(gw: Gateway, tenant_id: str | None, start: object, end: object) -> Reliability:
    """Attempts per reply, retry / fallback / failure rates, error codes and the retry tax."""
    lower, upper = day_range(start, end)
    where, params = tenant_scope(tenant_id)
    window = params + [lower, upper]
    # Only requests with a failed or skipped try need per-request work (a reply has exactly one ok try),
    # so the costly GROUP BY request_id runs over that minority instead of over every try.
    row = gw.sql(f"""
        WITH tries AS (
            SELECT request_id, provider, status, latency_ms, epoch_ms(created_at) AS at_ms
            FROM provider_call_events WHERE {where} AND created_at >= ? AND created_at < ?),
        troubled AS (
            SELECT request_id, count(*) FILTER (status <> 'skipped') AS attempts, bool_or(status = 'ok') AS replied,
                   count(DISTINCT provider) AS providers, count(*) FILTER (status = 'failed') AS failed_attempts,
                   coalesce(sum(latency_ms) FILTER (status = 'failed'), 0) AS failed_ms,
                   min(at_ms) AS first_ms, min(at_ms) FILTER (status = 'ok') AS ok_ms,
                   max(at_ms + latency_ms) AS end_ms
            FROM tries WHERE request_id IN (SELECT request_id FROM tries WHERE status <> 'ok')
            GROUP BY request_id),
        everything AS (SELECT count(*) FILTER (status <> 'skipped') AS attempts,
                              count(*) FILTER (status = 'ok') AS replies,
                              count(*) FILTER (status = 'skipped') AS skipped FROM tries)
        SELECT e.replies + (SELECT count(*) FILTER (NOT replied) FROM troubled) AS requests, e.replies,
               e.attempts, e.skipped,
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
        "skipped_attempts": int(row.skipped),
    }
    by_provider = gw.sql(f"""
        SELECT provider, count(*) FILTER (status <> 'skipped') AS attempts, count(*) FILTER (status = 'ok') AS ok,
               count(*) FILTER (status = 'failed') AS failed,
               count(*) FILTER (retries > 0 AND status <> 'skipped') AS retries,
               coalesce(sum(latency_ms) FILTER (status = 'failed'), 0)::BIGINT AS failed_ms,
               count(*) FILTER (status = 'skipped') AS skipped
        FROM provider_call_events WHERE {where} AND created_at >= ? AND created_at < ?
        GROUP BY provider ORDER BY provider""", window)
    by_provider["failure_rate"] = [_rate(f, a) for f, a in zip(by_provider.failed, by_provider.attempts, strict=True)]
    error_codes = gw.sql(f"""
        SELECT provider, coalesce(error_code, 'UNKNOWN') AS error_code, count(*) AS attempts,
               sum(latency_ms)::BIGINT AS latency_ms
        FROM provider_call_events WHERE {where} AND created_at >= ? AND created_at < ? AND status = 'failed'
        GROUP BY ALL ORDER BY provider, attempts DESC, error_code""", window)
    return Reliability(summary, by_provider, error_codes)

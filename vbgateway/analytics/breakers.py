"""Circuit breakers over time: every state change, and how long each provider's circuit was open.

Breakers belong to the gateway, not to a tenant, so these are operators'
questions and take no tenant scope. Each gateway process keeps its own
breakers (``gateway_id`` in ``breaker_transitions``): open time adds up over
processes, so two gateways with vendorA open for ten minutes each make twenty
gateway-minutes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from .periods import day_range

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["OPEN_TIME_COLUMNS", "TRANSITION_COLUMNS", "breaker_open_time", "breaker_transitions"]

TRANSITION_COLUMNS = ("created_at", "gateway_id", "seq", "provider", "from_state", "to_state", "reason",
                      "consecutive_failures", "window_calls", "window_failures")
OPEN_TIME_COLUMNS = ("provider", "opened", "open_s", "half_open_s", "not_closed_s")


def breaker_transitions(gw: Gateway, start: object = None, end: object = None, *,
                        limit: int | None = None) -> pd.DataFrame:
    """State changes in time order (the newest ``limit`` of them when given), over UTC days ``start``-``end``
    (both inclusive; either may be omitted)."""
    where, params = _range(start, end)
    order = "created_at DESC, gateway_id, seq DESC" if limit is not None else "created_at, gateway_id, seq"
    data = gw.sql(f"SELECT {', '.join(TRANSITION_COLUMNS)} FROM breaker_transitions WHERE {where} ORDER BY {order}"
                  + (" LIMIT ?" if limit is not None else ""), params + ([int(limit)] if limit is not None else []))
    return data.iloc[::-1].reset_index(drop=True) if limit is not None else data


def breaker_open_time(gw: Gateway, start: object, end: object, *, until: object = None) -> pd.DataFrame:
    """Per provider, within UTC days ``start``-``end``: circuits opened, seconds open, seconds half-open.

    A state lasts until the breaker's next transition; the last one lasts
    until ``until`` (default: the gateway's latest provider call, the last
    moment anything is known of), never past the range.
    """
    lower, upper = day_range(start, end, max_days=None)
    data = gw.sql("""
        WITH spans AS (
            SELECT provider, to_state AS state, created_at AS begins,
                   coalesce(lead(created_at) OVER (PARTITION BY gateway_id, provider ORDER BY seq),
                            greatest(created_at, coalesce(CAST(? AS TIMESTAMPTZ),
                                                          (SELECT max(created_at) FROM provider_call_events),
                                                          created_at))) AS ends
            FROM breaker_transitions WHERE created_at < ?),
        clipped AS (
            SELECT provider, state, begins,
                   greatest(epoch(least(ends, CAST(? AS TIMESTAMPTZ))) - epoch(greatest(begins, CAST(? AS TIMESTAMPTZ))),
                            0) AS seconds
            FROM spans WHERE ends > ?)
        SELECT provider,
               count(*) FILTER (state = 'open' AND begins >= ?) AS opened,
               coalesce(sum(seconds) FILTER (state = 'open'), 0) AS open_s,
               coalesce(sum(seconds) FILTER (state = 'half_open'), 0) AS half_open_s
        FROM clipped GROUP BY provider ORDER BY provider""",
                  [_instant(until), upper, upper, lower, lower, lower])
    data["opened"] = data["opened"].astype("int64")
    for column in ("open_s", "half_open_s"):
        data[column] = data[column].astype("float64")
    data["not_closed_s"] = data.open_s + data.half_open_s
    return data[list(OPEN_TIME_COLUMNS)]


def _range(start: object, end: object) -> tuple[str, list[Any]]:
    if start is None and end is None:
        return "TRUE", []
    lower, upper = day_range(start if start is not None else "1970-01-01", end if end is not None else "9999-12-31",
                             max_days=None)
    return "created_at >= ? AND created_at < ?", [lower, upper]


def _instant(value: object) -> object:
    return None if value is None else pd.Timestamp(value).to_pydatetime()

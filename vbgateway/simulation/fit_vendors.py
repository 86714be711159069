"""The vendors as the attempt log shows them: normal behaviour, and incidents found as change points.

Everything here reads ``provider_call_events`` (one row per try, failed ones
included) of a period, and returns what a scenario file says about vendors:

- ``find_incidents``: windows where a vendor's failure rate (HTTP 5xx: an
  outage; 429: a rate-limit storm) or its median latency jumps far above its
  own normal level. Five-minute bins find them (longer ones for a quiet
  vendor, so a busy bin holds at least 20 tries); each edge is then placed at
  the single change point of the tries around it that best splits them into
  two rates (a two-segment Bernoulli, or for latency a two-segment mean, by
  maximum likelihood), searched from the last normal bin before the window
  to its first bin (and likewise at its end): within seconds of the truth
  when the vendor is busy, within minutes when it is quiet.
- ``fit_vendor``: outside those windows, the share of 5xx and of 429 answers,
  the latency as the simulator draws it (uniform between a low and a high,
  with a share of spikes multiplied by a factor; fitted by maximum likelihood
  on a histogram), and the ``Retry-After`` spread, read from the wait between
  a 429 and the next try of the same request on the same vendor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["BIN_S", "FoundIncident", "VendorFit", "find_incidents", "fit_vendor"]

BIN_S = 300  # five-minute bins to find incident windows
_MIN_BIN_CALLS = 20  # fewer tries in a bin say too little: 11 of 20 failing at a usual 10% has odds of 1e-7


@dataclass(frozen=True)
class FoundIncident:
    vendor: str
    kind: str  # outage | rate_limit_storm | latency
    start: datetime
    end: datetime
    rate: float  # the share of failures of its kind inside (outage, storm)
    factor: float  # median latency inside / outside (latency)


@dataclass(frozen=True)
class VendorFit:
    failure_rate: float
    rate_limit_rate: float
    latency_ms: tuple[float, float]
    spike_rate: float
    spike_factor: float
    retry_after_ms: tuple[int, int] | None
    calls: int


def _calls(gw: Gateway, vendor: str, lower: datetime, upper: datetime) -> dict[str, np.ndarray]:
    """The vendor's tries of the period in time order: epoch seconds, kind (0 ok, 1 5xx, 2 429, 3 other), latency."""
    data = gw.sql("""
        SELECT epoch_us(created_at) / 1e6 AS t,
               CASE WHEN status = 'ok' THEN 0 WHEN http_status >= 500 THEN 1 WHEN http_status = 429 THEN 2 ELSE 3 END
                   AS kind,
               latency_ms
        FROM provider_call_events
        WHERE provider = ? AND status <> 'skipped' AND created_at >= ? AND created_at < ?
        ORDER BY created_at""", [vendor, lower, upper])
    return {"t": data.t.to_numpy(np.float64), "kind": data.kind.to_numpy(np.int64),
            "latency": data.latency_ms.to_numpy(np.float64)}


def _split(values: np.ndarray, gaussian: bool) -> int:
    """The index that best splits ``values`` into two segments of constant rate (or mean): maximum likelihood."""
    n = len(values)
    if n < 2:
        return 0
    k = np.arange(1, n)
    left = np.cumsum(values)[:-1]
    right = values.sum() - left
    if gaussian:  # equal variance: maximise the between-segment sum of squares
        score = left**2 / k + right**2 / (n - k)
    else:
        def ll(ones: np.ndarray, size: np.ndarray) -> np.ndarray:
            p = np.clip(ones / size, 1e-9, 1 - 1e-9)
            return np.asarray(ones * np.log(p) + (size - ones) * np.log(1 - p))
        score = ll(left, k) + ll(right, n - k)
    return int(k[int(np.argmax(score))])


def _edge(calls: dict[str, np.ndarray], signal: np.ndarray, lo: float, hi: float, gaussian: bool) -> float:
    """The instant in [lo, hi) where the tries' signal changes most (the midpoint between two tries)."""
    near = np.flatnonzero((calls["t"] >= lo) & (calls["t"] < hi))
    if len(near) < 2:
        return (lo + hi) / 2
    i = _split(signal[near], gaussian)
    before, after = calls["t"][near[i - 1]], calls["t"][near[i]]
    return float((before + after) / 2)


def find_incidents(gw: Gateway, vendor: str, lower: datetime, upper: datetime) -> list[FoundIncident]:
    """Windows of the period in which ``vendor`` failed (or slowed) far beyond its usual level."""
    calls = _calls(gw, vendor, lower, upper)
    if len(calls["t"]) < _MIN_BIN_CALLS:
        return []
    origin = lower.timestamp()
    width = _bin_width(calls["t"] - origin)
    bins = ((calls["t"] - origin) // width).astype(np.int64)
    count = np.bincount(bins, minlength=int(bins.max()) + 1).astype(np.float64)
    valid = count >= _MIN_BIN_CALLS
    found: list[FoundIncident] = []
    signals = {"outage": (calls["kind"] == 1).astype(np.float64), "rate_limit_storm": (calls["kind"] == 2).astype(
        np.float64), "latency": np.log(np.maximum(calls["latency"], 1.0))}
    for kind, signal in signals.items():
        if not valid.any():
            break
        sums = np.bincount(bins, weights=signal, minlength=len(count))
        level = np.divide(sums, count, out=np.zeros(len(count)), where=valid)
        usual = float(np.median(level[valid]))
        # latency: the median try 2.5 times slower; a rate: most tries failing, far above the usual share
        limit = usual + np.log(2.5) if kind == "latency" else max(0.5, usual + 0.35)
        flagged = valid & (level > limit)
        for first, last in _runs(flagged, valid):
            if last == first:
                continue  # one bin alone is noise more often than an incident
            before = _last_normal(valid & ~flagged, first, -1)
            after = _last_normal(valid & ~flagged, last, 1)
            gaussian = kind == "latency"
            start = _edge(calls, signal, origin + before * width, origin + (first + 1) * width, gaussian)
            end = _edge(calls, signal, origin + last * width, origin + (after + 1) * width, gaussian)
            inside = (calls["t"] >= start) & (calls["t"] < end)
            outside = ~inside
            rate = float(signal[inside].mean()) if kind != "latency" and inside.any() else 0.0
            factor = float(np.exp(np.median(signal[inside]) - np.median(signal[outside]))) if (
                kind == "latency" and inside.any() and outside.any()) else 1.0
            found.append(FoundIncident(vendor, kind, datetime.fromtimestamp(start, lower.tzinfo),
                                       datetime.fromtimestamp(end, lower.tzinfo), round(rate, 3), round(factor, 2)))
    return found


def _bin_width(seconds: np.ndarray) -> float:
    """``BIN_S``, or a multiple of it (up to an hour) that gives a busy bin enough tries to judge a rate."""
    per_bin = np.bincount((seconds // BIN_S).astype(np.int64))
    busy = float(np.quantile(per_bin[per_bin > 0], 0.75)) if (per_bin > 0).any() else 0.0
    return float(BIN_S * min(12, max(1, int(np.ceil(_MIN_BIN_CALLS / max(busy, 1.0))))))


def _last_normal(normal: np.ndarray, at: int, step: int) -> int:
    """The nearest bin before (step -1) or after (+1) ``at`` that was judged normal; the last one tried if none."""
    i = at + step
    while 0 <= i < len(normal) and not normal[i]:
        i += step
    return min(max(i, 0), len(normal) - 1)


def _runs(flagged: np.ndarray, valid: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) bins of each run of flagged bins; bins too thin to judge, or one normal bin, do not end a run."""
    runs: list[list[int]] = []
    normal_since = 0
    for i in range(len(flagged)):
        if flagged[i]:
            if runs and normal_since <= 1:
                runs[-1][1] = i
            else:
                runs.append([i, i])
            normal_since = 0
        elif valid[i]:
            normal_since += 1
    return [(a, b) for a, b in runs]


def _latency_mixture(latency: np.ndarray) -> tuple[tuple[float, float], float, float]:
    """(low, high), spike share and factor of a uniform latency with uniform spikes, by binned maximum likelihood."""
    if len(latency) == 0:
        return (50.0, 300.0), 0.0, 1.0
    low = float(np.quantile(latency, 0.002))
    edges = np.linspace(0.0, float(np.quantile(latency, 0.999)) * 1.01 + 1.0, 241)
    counts, _ = np.histogram(latency, edges)
    centers = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    best: tuple[float, Any] = (-np.inf, None)
    for high in np.quantile(latency, np.linspace(0.6, 0.995, 40)):
        if high <= low:
            continue
        core = ((centers >= low) & (centers <= high)) / (high - low)
        for factor in np.arange(1.5, 6.01, 0.25):
            spike = ((centers >= low * factor) & (centers <= high * factor)) / (high * factor - low * factor)
            for share in (0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12):
                density = (1 - share) * core + share * spike + 1e-6 / width
                ll = float((counts * np.log(density)).sum())
                if ll > best[0]:
                    best = (ll, ((round(low, 1), round(float(high), 1)), share, round(float(factor), 2)))
    (bounds, share, factor) = best[1]
    return bounds, share, (factor if share > 0 else 1.0)


def fit_vendor(gw: Gateway, vendor: str, lower: datetime, upper: datetime,
               incidents: list[FoundIncident]) -> VendorFit | None:
    """The vendor's normal behaviour in the period, its incident windows left out; None without tries."""
    calls = _calls(gw, vendor, lower, upper)
    normal = np.ones(len(calls["t"]), dtype=bool)
    for incident in incidents:
        normal &= ~((calls["t"] >= incident.start.timestamp()) & (calls["t"] < incident.end.timestamp()))
    kind, latency = calls["kind"][normal], calls["latency"][normal]
    if len(kind) == 0:
        return None
    bounds, spike_rate, spike_factor = _latency_mixture(latency)
    waits = gw.sql("""
        WITH tries AS (
            SELECT request_id, provider, http_status, created_at, latency_ms,
                   lead(created_at) OVER (PARTITION BY request_id ORDER BY created_at) AS next_at,
                   lead(provider) OVER (PARTITION BY request_id ORDER BY created_at) AS next_provider
            FROM provider_call_events WHERE created_at >= ? AND created_at < ? AND status <> 'skipped')
        SELECT (epoch_ms(next_at) - epoch_ms(created_at) - latency_ms)::DOUBLE AS wait_ms FROM tries
        WHERE provider = ? AND http_status = 429 AND next_provider = provider""", [lower, upper, vendor]).wait_ms
    retry_after = None
    if len(waits) >= 20:
        low, high = np.quantile(waits.to_numpy(np.float64), [0.01, 0.99])
        retry_after = (int(max(0.0, round(low, -1))), int(round(high, -1)))
    return VendorFit(failure_rate=round(float((kind == 1).mean()), 4),
                     rate_limit_rate=round(float((kind == 2).mean()), 4), latency_ms=bounds, spike_rate=spike_rate,
                     spike_factor=spike_factor, retry_after_ms=retry_after, calls=len(kind))


def merge_window(incidents: list[FoundIncident], gap: timedelta = timedelta(0)) -> list[FoundIncident]:
    """Incidents of one vendor and kind that touch (or lie within ``gap``) become one."""
    out: list[FoundIncident] = []
    for item in sorted(incidents, key=lambda i: (i.vendor, i.kind, i.start)):
        last = out[-1] if out else None
        if last is not None and (last.vendor, last.kind) == (item.vendor, item.kind) and item.start <= last.end + gap:
            out[-1] = FoundIncident(last.vendor, last.kind, last.start, max(last.end, item.end),
                                    max(last.rate, item.rate), max(last.factor, item.factor))
        else:
            out.append(item)
    return out

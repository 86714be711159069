"""The event generator: a month of billed replies and their tries at a time, drawn with numpy.

Pure computation: a seed, the tenant and agent ids and the prices go in, Arrow
tables come out; nothing here touches a database, so the same rows can be
written by ``loader.generate`` or measured on their own.

Physical layout matters more than indexes for what reads these rows: every
month comes out sorted by (tenant id, time), so DuckDB's per-row-group min/max
(zonemaps) on ``created_at`` and ``tenant_id`` skip almost everything a
one-tenant, one-month query does not need. That mirrors the gateway's own
order (its batches are in time order) with tenants clustered inside each batch.

Costs are exact: a price with at most 7 places is an integer number of 1e-7
USD, so a cost is (tokens in + out) x that integer in units of 1e-10 USD,
written straight into Arrow's decimal128 buffers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from decimal import Decimal

import numpy as np
import pyarrow as pa

from ..errors import ValidationError
from ..pricing import PRICE_PLACES
from .columns import decimal_array, dictionary_labels, prefixed_ids
from .spec import SyntheticSpec

__all__ = ["MonthBatch", "month_batches"]

MonthBatch = tuple[pa.Table, pa.Table | None, np.ndarray, np.ndarray]
"""(usage_events, provider_call_events or None, events per tenant, cost units of 1e-10 USD per tenant)."""

_US_PER_DAY = 86_400_000_000
_EPOCH = date(1970, 1, 1)
_TS = pa.timestamp("us", tz="UTC")
_GRID_BITS = 14  # _bin_counts cuts [0, 1) into 2**14 cells: a cheap table, and few draws left to search


def _blocks(sizes: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Positions that list consecutive blocks of ``sizes`` rows in block ``order``, each block's rows in place."""
    starts = np.cumsum(sizes) - sizes
    moved = sizes[order]
    return np.repeat(starts[order] - (np.cumsum(moved) - moved), moved) + np.arange(int(moved.sum()))


def _sorted_within(group: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``offsets`` sorted within each run of equal ``group`` values (``group`` sorted, both >= 0).

    Same values as ``offsets[np.lexsort((offsets, group))]``, by one sort of a packed
    (group, offset) key instead of lexsort's sort per key.
    """
    bits = int(offsets.max(initial=0)).bit_length()
    if len(group) == 0 or bits + int(group[-1]).bit_length() > 62:
        return offsets[np.lexsort((offsets, group))]
    key = np.sort((group.astype(np.int64) << bits) | offsets)
    return key & ((1 << bits) - 1)


def _bin_counts(cdf: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """``bincount(searchsorted(cdf, draws, side="right"), minlength=len(cdf))`` for draws in [0, 1), exactly.

    A binary search per draw is most of the cost of drawing a month. Cut [0, 1) into 2**_GRID_BITS
    equal cells (their edges are exact in binary, and so is the cell of a draw): a cell with no
    value of ``cdf`` strictly inside maps all its draws to one bin, looked up in a table; only
    the draws in the few cells that hold a boundary are searched.
    """
    grid = 1 << _GRID_BITS
    edges = np.arange(grid + 1, dtype=np.float64) / grid
    first = np.searchsorted(cdf, edges[:-1], side="right")  # the bin of a draw at a cell's left edge
    split = first != np.searchsorted(cdf, edges[1:], side="left")  # a boundary inside the cell
    cell = (draws * grid).astype(np.intp)
    bins = first[cell]
    odd = np.flatnonzero(split[cell])
    bins[odd] = np.searchsorted(cdf, draws[odd], side="right")
    return np.bincount(bins, minlength=len(cdf))


def _months(start: date, end: date) -> list[tuple[int, int]]:
    """(first day, day after last) of each calendar month in [start, end], as days since the epoch."""
    out, year, month = [], start.year, start.month
    while date(year, month, 1) <= end:
        nxt = date(year + month // 12, month % 12 + 1, 1)
        lo, hi = max(date(year, month, 1), start), min(nxt, date.fromordinal(end.toordinal() + 1))
        out.append(((lo - _EPOCH).days, (hi - _EPOCH).days))
        year, month = nxt.year, nxt.month
    return out


def month_batches(spec: SyntheticSpec, tenant_ids: Sequence[str], agent_ids: Sequence[Sequence[str]],
                  prices: dict[str, Decimal]) -> Iterator[MonthBatch]:
    """Per calendar month: (usage_events, provider_call_events or None, events per tenant, cost units per tenant).

    Rows are sorted by tenant id, then time; cost units are 1e-10 USD, exact. Values are drawn
    tenant by tenant in the order of ``tenant_ids`` (so a seed gives the same rows whatever the
    ids); only then are the tenants' blocks put in id order, which is what lets DuckDB's
    zonemaps on ``tenant_id`` skip the other tenants' row groups.
    """
    spec.validate()
    if len(tenant_ids) != spec.tenants or any(len(a) != spec.agents_per_tenant for a in agent_ids):
        raise ValidationError("one tenant id per tenant and agents_per_tenant agent ids for each")
    rng = np.random.default_rng(spec.seed)
    months = _months(spec.start, spec.end)
    days = np.array([hi - lo for lo, hi in months], dtype=np.float64)
    per_month = np.floor(spec.events * np.cumsum(days) / days.sum() + 0.5).astype(np.int64)
    per_month = np.diff(np.concatenate([[0], per_month]))
    weights = np.asarray(spec.weights if spec.weights is not None else [1.0] * spec.tenants, dtype=np.float64)
    weights = weights / weights.sum()
    cdf = weights.cumsum()
    cdf /= cdf[-1]
    by_id = np.array(sorted(range(spec.tenants), key=lambda t: tenant_ids[t]), dtype=np.int64)
    price_units = {p: int(v.scaleb(PRICE_PLACES)) for p, v in prices.items()}
    providers = np.array(["vendorA", "vendorB"])
    flat_agents = [a for agents in agent_ids for a in agents]
    serial = 0
    for (lo, hi), n in zip(months, per_month, strict=True):
        if n == 0:
            continue
        # rng.choice(tenants, n, p=weights) is searchsorted(cdf, rng.random(n)); only the counts matter
        counts = _bin_counts(cdf, rng.random(n))
        tenant = np.repeat(np.arange(spec.tenants), counts)
        stamp = rng.integers(lo * _US_PER_DAY, hi * _US_PER_DAY, size=n)
        stamp = _sorted_within(tenant, stamp - lo * _US_PER_DAY) + lo * _US_PER_DAY
        numbers = np.arange(serial, serial + n)
        serial += n
        agent = rng.integers(0, spec.agents_per_tenant, size=n)
        provider = (rng.random(n) >= spec.vendor_a_share).astype(np.int64)
        tokens_in = rng.integers(40, 2000, size=n, dtype=np.int32)
        tokens_out = rng.integers(5, 400, size=n, dtype=np.int32)
        voice = (rng.random(n) < spec.voice_share).astype(np.int32)
        unit = np.array([price_units[p] for p in providers])[provider]
        cost = (tokens_in.astype(np.int64) + tokens_out) * unit
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        units = np.where(counts > 0, np.add.reduceat(cost, np.minimum(starts, n - 1)), 0)
        at = _blocks(counts, by_id)  # row of the table -> row as drawn
        stamp, provider = stamp[at], provider[at]
        tag = spec.tag
        event_ids, message_ids, request_ids = prefixed_ids([f"evt_{tag}", f"msg_{tag}", f"req_{tag}"], numbers[at])
        usage = pa.table({
            "id": event_ids,
            "tenant_id": dictionary_labels(tenant[at], tenant_ids),
            "session_id": prefixed_ids([f"ses_{tag}"], numbers[at] // spec.replies_per_session)[0],
            "agent_id": dictionary_labels((tenant * spec.agents_per_tenant + agent)[at], flat_agents),
            "message_id": message_ids,
            "request_id": request_ids,
            "provider": dictionary_labels(provider, providers),
            "channel": dictionary_labels(voice[at], ["chat", "voice"]),
            "tokens_in": tokens_in[at], "tokens_out": tokens_out[at],
            "usd_per_1k_tokens": decimal_array(unit[at], 18, 7),
            "cost_usd": decimal_array(cost[at], 24, 10),
            "created_at": pa.array(stamp, pa.int64()).cast(_TS),
        })
        attempts = _attempts(rng, spec, usage, int(numbers[0]), stamp, provider, providers, at) if spec.attempts else None
        yield usage, attempts, counts, units


def _attempts(rng: np.random.Generator, spec: SyntheticSpec, usage: pa.Table, first: int, stamp: np.ndarray,
              provider: np.ndarray, providers: np.ndarray, at: np.ndarray) -> pa.Table:
    """The tries behind each reply: geometric failures on the primary; three failures mean fallback.

    ``stamp`` and ``provider`` are in ``usage``'s row order, ``at`` maps those rows to the order the
    replies were drawn in: the tries are drawn (and numbered) in that order, then listed reply by reply.
    """
    n = len(at)
    if spec.failure_rate > 0:
        failed = np.minimum(np.floor(np.log(rng.random(n)) / np.log(spec.failure_rate)), 3).astype(np.int64)
    else:
        failed = np.zeros(n, dtype=np.int64)
    drawn_first = np.cumsum(failed + 1) - (failed + 1)  # number of each reply's first try, in drawn order
    failed = failed[at]
    tries = failed + 1
    row = np.repeat(np.arange(n), tries)
    index = np.arange(len(row)) - np.repeat(np.cumsum(tries) - tries, tries)  # 0.. within the reply
    number = np.repeat(drawn_first[at], tries) + index
    is_ok = index == failed[row]
    served = provider[row]
    tried = np.where(~is_ok & (failed[row] == 3), 1 - served, served)  # fallback: failures were on the other one
    latency = rng.integers(50, 300, size=len(row)).astype(np.int32)[number]
    start = stamp[row] - (failed[row] - index) * 400_000
    return pa.table({
        "id": prefixed_ids([f"evt_{spec.tag}a"], number + first * 4)[0],
        "tenant_id": usage.column("tenant_id").take(pa.array(row)),
        "session_id": usage.column("session_id").take(pa.array(row)),
        "agent_id": usage.column("agent_id").take(pa.array(row)),
        "request_id": usage.column("request_id").take(pa.array(row)),
        "provider": dictionary_labels(tried, providers),
        "status": dictionary_labels((~is_ok).astype(np.int32), ["ok", "failed"]),
        "http_status": pa.array(np.where(is_ok, 200, np.where(tried == 1, 429, 500)), pa.int32()),
        "latency_ms": latency,
        "retries": pa.array((index % 3).astype(np.int32)),  # the fallback's one try is its first
        "error_code": pa.DictionaryArray.from_arrays(  # vendorB refuses with 429s, vendorA with 500s
            pa.array(tried.astype(np.int32), mask=is_ok), pa.array(["SERVER_ERROR", "RATE_LIMITED"])),
        "created_at": pa.array(start, pa.int64()).cast(_TS),
    })

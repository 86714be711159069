"""Fast synthetic usage: millions of billed replies (and their tries) straight into DuckDB.

The simulator drives the real gateway and is the right tool for behaviour;
this is the tool for volume (benchmarks, report fixtures with known totals).
Rows are built column-wise with numpy, turned into Arrow without a Python
loop, and appended with ``Store.bulk_insert_many`` one calendar month at a time,
usage and attempt rows at once (two DuckDB inserts side by side, while a worker
thread builds the next month).

Physical layout matters more than indexes here: every month is inserted
sorted by (tenant id, time), so DuckDB's per-row-group min/max (zonemaps) on
``created_at`` and ``tenant_id`` skip almost everything a one-tenant,
one-month query does not need. That mirrors the gateway's own order (its
batches are in time order) with tenants clustered inside each batch. Inserts
are cut into whole row groups (see ``_whole_row_groups``) so that no
checkpoint has to merge and recompress partial ones.

Costs are exact: a price with at most 7 places is an integer number of 1e-7
USD, so a cost is (tokens in + out) x that integer in units of 1e-10 USD,
written straight into Arrow's decimal128 buffers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ValidationError
from .pricing import PRICE_PLACES
from .tenant import TenantClient

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["SyntheticResult", "SyntheticSpec", "create_tenants", "generate", "month_batches", "populate"]

T = TypeVar("T")
_COST_UNIT = Decimal(1).scaleb(-10)
_US_PER_DAY = 86_400_000_000
_EPOCH = date(1970, 1, 1)
_TS = pa.timestamp("us", tz="UTC")
_GRID_BITS = 14  # _bin_counts cuts [0, 1) into 2**14 cells: a cheap table, and few draws left to search
ROW_GROUP_ROWS = 122_880  # DuckDB's rows per row group (its default; only speed depends on it)


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. ``weights`` skews volume between tenants (default: equal shares)."""

    events: int = 100_000
    tenants: int = 10
    start: date = date(2025, 1, 1)
    end: date = date(2025, 12, 31)
    agents_per_tenant: int = 3
    replies_per_session: int = 8
    voice_share: float = 0.1
    vendor_a_share: float = 0.6
    failure_rate: float = 0.1
    attempts: bool = True
    weights: Sequence[float] | None = None
    seed: int = 0
    tag: str = "syn"

    def validate(self) -> None:
        if self.events < 0 or self.tenants < 1 or self.agents_per_tenant < 1 or self.replies_per_session < 1:
            raise ValidationError("events >= 0, tenants, agents_per_tenant and replies_per_session >= 1")
        if self.start > self.end:
            raise ValidationError("'start' must not be after 'end'")
        if self.weights is not None and (len(self.weights) != self.tenants or min(self.weights) < 0
                                         or sum(self.weights) <= 0):
            raise ValidationError("weights: one non-negative number per tenant, not all zero")
        if not 0 <= self.failure_rate < 1:
            raise ValidationError("failure_rate is in [0, 1)")


@dataclass
class SyntheticResult:
    """What was written, with exact totals to check reports against."""

    tenant_ids: list[str]
    usage_rows: int = 0
    attempt_rows: int = 0
    cost_usd: Decimal = Decimal(0)
    per_tenant: dict[str, tuple[int, Decimal]] = field(default_factory=dict)


def _decimal_array(units: np.ndarray, precision: int, scale: int) -> pa.Array:
    """decimal128 values from non-negative integer units (value x 10**scale), without Python objects."""
    raw = np.empty((len(units), 2), dtype=np.int64)
    raw[:, 0], raw[:, 1] = units, 0
    return pa.Array.from_buffers(pa.decimal128(precision, scale), len(units), [None, pa.py_buffer(raw)])


def _labels(indices: np.ndarray, names: Sequence[str]) -> pa.Array:
    """A dictionary-encoded string column: no Python string per row, and DuckDB reads it natively."""
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)), pa.array(list(names), pa.string()))


def _ids(prefixes: Sequence[str], numbers: np.ndarray) -> list[pa.Array]:
    """``prefix + str(number)`` for each prefix, as Arrow strings sharing one digit computation.

    Numbers (>= 0) come in long runs of equal digit count (serials, tenant by tenant): each run's
    strings are the rows of a byte matrix, written column by column from contiguous rows of digit
    characters (numpy copies a whole column at once; a row of a dozen bytes at a time is twice as
    slow). Faster than Arrow's int-to-string cast plus a join, and the digits are shared by the
    three ids of a reply.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    if len(numbers) == 0 or numbers.min() < 0:
        return [pc.binary_join_element_wise(p, pc.cast(pa.array(numbers), pa.string()), "") for p in prefixes]
    low, high = len(str(int(numbers.min()))), len(str(int(numbers.max())))
    width = np.full(len(numbers), low, np.int64)
    for k in range(low, high):  # only the powers of ten inside [min, max]
        width += numbers >= 10**k
    bounds = [0, *(np.flatnonzero(np.diff(width)) + 1).tolist(), len(numbers)] if high > low else [0, len(numbers)]
    small = numbers.astype(np.uint32) if numbers.max() < 2**32 else numbers  # 32-bit division is faster
    runs = []  # per run of equal width: its digit characters, one contiguous row per position
    for lo, hi in zip(bounds, bounds[1:]):
        digits, rest = np.empty((len(str(int(numbers[lo]))), hi - lo), np.uint8), small[lo:hi]
        for k in range(len(digits) - 1, -1, -1):
            quotient = rest // 10
            np.add(rest - quotient * 10, ord("0"), out=digits[k], casting="unsafe")
            rest = quotient
        runs.append(digits)
    out = []
    for prefix in prefixes:
        head = prefix.encode()
        blocks = []
        for digits in runs:
            block = np.empty((digits.shape[1], len(head) + len(digits)), np.uint8)
            for k, byte in enumerate(head):
                block[:, k] = byte
            for k, column in enumerate(digits, start=len(head)):
                block[:, k] = column
            blocks.append(block.reshape(-1))
        data = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        if len(data) >= 2**31:  # beyond 32-bit offsets: let Arrow do it (and complain)
            return [pc.binary_join_element_wise(p, pc.cast(pa.array(numbers), pa.string()), "") for p in prefixes]
        if high == low:  # one width: evenly spaced offsets
            offsets = np.arange(0, len(data) + 1, len(head) + low, dtype=np.int32)
        else:
            offsets = np.zeros(len(numbers) + 1, np.int32)
            np.cumsum(width + len(head), out=offsets[1:])
        out.append(pa.Array.from_buffers(pa.string(), len(numbers), [None, pa.py_buffer(offsets), pa.py_buffer(data)]))
    return out


def _blocks(sizes: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Positions that list consecutive blocks of ``sizes`` rows in block ``order``, each block's rows in place."""
    starts = np.cumsum(sizes) - sizes
    moved = sizes[order]
    return np.repeat(starts[order] - (np.cumsum(moved) - moved), moved) + np.arange(int(moved.sum()))


def _sorted_within(group: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``offsets`` sorted within each run of equal ``group`` values (``group`` sorted, both >= 0).

    Same values as ``offsets[np.lexsort((offsets, group))]``, by one sort of a packed
    (group, offset) key: a tenth of lexsort's time for a month of events.
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
                  prices: dict[str, Decimal]) -> Iterator[tuple[pa.Table, pa.Table | None, np.ndarray, np.ndarray]]:
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
    for (lo, hi), n in zip(months, per_month):
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
        event_ids, message_ids, request_ids = _ids([f"evt_{tag}", f"msg_{tag}", f"req_{tag}"], numbers[at])
        usage = pa.table({
            "id": event_ids,
            "tenant_id": _labels(tenant[at], tenant_ids),
            "session_id": _ids([f"ses_{tag}"], numbers[at] // spec.replies_per_session)[0],
            "agent_id": _labels((tenant * spec.agents_per_tenant + agent)[at], flat_agents),
            "message_id": message_ids,
            "request_id": request_ids,
            "provider": _labels(provider, providers),
            "channel": _labels(voice[at], ["chat", "voice"]),
            "tokens_in": tokens_in[at], "tokens_out": tokens_out[at],
            "usd_per_1k_tokens": _decimal_array(unit[at], 18, 7),
            "cost_usd": _decimal_array(cost[at], 24, 10),
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
        "id": _ids([f"evt_{spec.tag}a"], number + first * 4)[0],
        "tenant_id": usage.column("tenant_id").take(pa.array(row)),
        "session_id": usage.column("session_id").take(pa.array(row)),
        "agent_id": usage.column("agent_id").take(pa.array(row)),
        "request_id": usage.column("request_id").take(pa.array(row)),
        "provider": _labels(tried, providers),
        "status": _labels((~is_ok).astype(np.int32), ["ok", "failed"]),
        "http_status": pa.array(np.where(is_ok, 200, np.where(tried == 1, 429, 500)), pa.int32()),
        "latency_ms": latency,
        "retries": pa.array((index % 3).astype(np.int32)),  # the fallback's one try is its first
        "error_code": pa.DictionaryArray.from_arrays(  # vendorB refuses with 429s, vendorA with 500s
            pa.array(tried.astype(np.int32), mask=is_ok), pa.array(["SERVER_ERROR", "RATE_LIMITED"])),
        "created_at": pa.array(start, pa.int64()).cast(_TS),
    })


def _ahead(batches: Iterator[T]) -> Iterator[T]:
    """Build the next month in a worker thread while DuckDB inserts this one (both release the GIL)."""
    with ThreadPoolExecutor(max_workers=1) as worker:
        pending = worker.submit(next, batches, None)
        while True:
            item = pending.result()
            if item is None:
                return
            pending = worker.submit(next, batches, None)
            yield item


def create_tenants(gw: Gateway, spec: SyntheticSpec) -> tuple[list[str], list[list[str]]]:
    """``spec.tenants`` tenants and their agents, for ``generate``: (tenant ids, agent ids per tenant).

    One at a time, through the gateway, so they are real ones (keys, cached agents); each is its
    own durable commit, which is why this is slow next to ``generate`` and timed apart from it.
    """
    spec.validate()
    tenant_ids, agent_ids = [], []
    for t in range(spec.tenants):
        tenant, _ = gw.create_tenant(f"Synthetic {spec.tag} {t:03d}")
        client = TenantClient(gw, tenant)  # the tenant just created: as_tenant would look it up again
        agents = [client.create_agent(name=f"Agent {a + 1}", primary_provider="vendorA", fallback_provider="vendorB",
                                      system_prompt="You are a synthetic agent.").id
                  for a in range(spec.agents_per_tenant)]
        tenant_ids.append(tenant.id)
        agent_ids.append(agents)
    return tenant_ids, agent_ids


def _whole_row_groups(tail: pa.Table | None, table: pa.Table) -> tuple[pa.Table | None, pa.Table]:
    """(the leading whole row groups of ``tail + table``, or None; the rows left over).

    DuckDB writes a bulk insert straight to the file as compressed row groups, but ends
    every insert, and every Arrow chunk, with a partial row group; the next checkpoint
    merges those partials and compresses their rows again (seconds for millions of rows).
    So every chunk handed over is whole row groups: the tail joins the next month's first
    rows in one copied row group, the rest of the month is passed on without copying.
    """
    chunks = []
    if tail is not None and tail.num_rows:
        need = ROW_GROUP_ROWS - tail.num_rows
        if table.num_rows < need:
            return None, pa.concat_tables([tail, table])
        chunks.append(pa.concat_tables([tail, table.slice(0, need)]).combine_chunks())
        table = table.slice(need)
    cut = table.num_rows // ROW_GROUP_ROWS * ROW_GROUP_ROWS
    if cut:
        chunks.append(table.slice(0, cut))
    return (pa.concat_tables(chunks) if chunks else None), table.slice(cut)


def _aligned(batches: Iterator[tuple[pa.Table, pa.Table | None, np.ndarray, np.ndarray]]
             ) -> Iterator[tuple[pa.Table | None, pa.Table | None, np.ndarray, np.ndarray]]:
    """``month_batches`` re-cut into whole row groups per table; what is left over goes last.

    Row order is unchanged; per-tenant counts and cost units stay with the month that made them.
    """
    tails: list[pa.Table | None] = [None, None]
    for usage, attempts, counts, units in batches:
        ready: list[pa.Table | None] = [None, None]
        for i, table in enumerate((usage, attempts)):
            if table is not None:
                ready[i], tails[i] = _whole_row_groups(tails[i], table)
        yield ready[0], ready[1], counts, units
    if tails[0] is not None:
        last = [None if t is None else t.combine_chunks() for t in tails]
        yield last[0], last[1], np.zeros(0, np.int64), np.zeros(0, np.int64)


def _insert(gw: Gateway, usage: pa.Table | None, attempts: pa.Table | None) -> tuple[int, int]:
    """(usage rows, attempt rows) written: both tables in one call, inserted side by side, all or nothing."""
    ready = {name: rows for name, rows in (("usage_events", usage), ("provider_call_events", attempts))
             if rows is not None and rows.num_rows}
    written = gw.store.bulk_insert_many(ready) if ready else {}
    return written.get("usage_events", 0), written.get("provider_call_events", 0)


def generate(gw: Gateway, spec: SyntheticSpec, tenant_ids: Sequence[str] | None = None,
             agent_ids: Sequence[Sequence[str]] | None = None) -> SyntheticResult:
    """Append ``spec.events`` usage events (and their tries) for existing tenants and agents."""
    if tenant_ids is None or agent_ids is None:
        raise ValidationError("generate needs tenant_ids and agent_ids; create_tenants() makes them")
    prices = {p: gw.prices.price_per_1k(p) for p in ("vendorA", "vendorB")}
    result = SyntheticResult(list(tenant_ids))
    events = [0] * len(tenant_ids)
    units = [0] * len(tenant_ids)
    for usage, attempts, counts, cost_units in _ahead(_aligned(month_batches(spec, tenant_ids, agent_ids, prices))):
        usage_rows, attempt_rows = _insert(gw, usage, attempts)
        result.usage_rows += usage_rows
        result.attempt_rows += attempt_rows
        for i in np.flatnonzero(counts):
            events[i] += int(counts[i])
            units[i] += int(cost_units[i])
    result.per_tenant = {t: (events[i], Decimal(units[i]) * _COST_UNIT) for i, t in enumerate(tenant_ids)}
    result.cost_usd = sum((c for _, c in result.per_tenant.values()), Decimal(0))
    return result


def populate(gw: Gateway, spec: SyntheticSpec) -> SyntheticResult:
    """Create ``spec.tenants`` tenants with their agents, then generate their usage."""
    spec.validate()
    tenant_ids, agent_ids = create_tenants(gw, spec)
    return generate(gw, spec, tenant_ids, agent_ids)

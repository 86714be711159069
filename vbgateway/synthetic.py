"""Fast synthetic usage: millions of billed replies (and their tries) straight into DuckDB.

The simulator drives the real gateway and is the right tool for behaviour;
this is the tool for volume (benchmarks, report fixtures with known totals).
Rows are built column-wise with numpy, turned into Arrow without a Python
loop, and appended with ``Store.bulk_insert`` one calendar month at a time.

Physical layout matters more than indexes here: every month is inserted
sorted by (tenant, time), so DuckDB's per-row-group min/max (zonemaps) on
``created_at`` and ``tenant_id`` skip almost everything a one-tenant,
one-month query does not need. That mirrors the gateway's own order (its
batches are in time order) with tenants clustered inside each batch.

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

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["SyntheticResult", "SyntheticSpec", "generate", "month_batches", "populate"]

T = TypeVar("T")
_COST_UNIT = Decimal(1).scaleb(-10)
_US_PER_DAY = 86_400_000_000
_EPOCH = date(1970, 1, 1)
_TS = pa.timestamp("us", tz="UTC")


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
    raw = np.zeros((len(units), 2), dtype=np.int64)
    raw[:, 0] = units
    return pa.Array.from_buffers(pa.decimal128(precision, scale), len(units), [None, pa.py_buffer(raw.tobytes())])


def _labels(indices: np.ndarray, names: Sequence[str]) -> pa.Array:
    """A dictionary-encoded string column: no Python string per row, and DuckDB reads it natively."""
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)), pa.array(list(names), pa.string()))


def _ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")


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

    Rows are sorted by tenant, then time; cost units are 1e-10 USD, exact.
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
    price_units = {p: int(v.scaleb(PRICE_PLACES)) for p, v in prices.items()}
    providers = np.array(["vendorA", "vendorB"])
    flat_agents = [a for agents in agent_ids for a in agents]
    serial = 0
    for (lo, hi), n in zip(months, per_month):
        if n == 0:
            continue
        counts = np.bincount(rng.choice(spec.tenants, size=n, p=weights), minlength=spec.tenants)
        tenant = np.repeat(np.arange(spec.tenants), counts)
        stamp = rng.integers(lo * _US_PER_DAY, hi * _US_PER_DAY, size=n)
        order = np.lexsort((stamp, tenant))
        stamp = stamp[order]
        numbers = np.arange(serial, serial + n)
        serial += n
        agent = rng.integers(0, spec.agents_per_tenant, size=n)
        provider = (rng.random(n) >= spec.vendor_a_share).astype(np.int64)
        tokens_in = rng.integers(40, 2000, size=n, dtype=np.int32)
        tokens_out = rng.integers(5, 400, size=n, dtype=np.int32)
        unit = np.array([price_units[p] for p in providers])[provider]
        cost = (tokens_in.astype(np.int64) + tokens_out) * unit
        sessions = numbers // spec.replies_per_session
        tag = spec.tag
        usage = pa.table({
            "id": _ids(f"evt_{tag}", numbers),
            "tenant_id": _labels(tenant, tenant_ids),
            "session_id": _ids(f"ses_{tag}", sessions),
            "agent_id": _labels(tenant * spec.agents_per_tenant + agent, flat_agents),
            "message_id": _ids(f"msg_{tag}", numbers),
            "request_id": _ids(f"req_{tag}", numbers),
            "provider": _labels(provider, providers),
            "channel": _labels((rng.random(n) < spec.voice_share).astype(np.int32), ["chat", "voice"]),
            "tokens_in": tokens_in, "tokens_out": tokens_out,
            "usd_per_1k_tokens": _decimal_array(unit, 18, 7),
            "cost_usd": _decimal_array(cost, 24, 10),
            "created_at": pa.array(stamp, pa.int64()).cast(_TS),
        })
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        units = np.where(counts > 0, np.add.reduceat(cost, np.minimum(starts, n - 1)), 0)
        attempts = _attempts(rng, spec, usage, numbers, stamp, provider, providers) if spec.attempts else None
        yield usage, attempts, counts, units


def _attempts(rng: np.random.Generator, spec: SyntheticSpec, usage: pa.Table, numbers: np.ndarray,
              stamp: np.ndarray, provider: np.ndarray, providers: np.ndarray) -> pa.Table:
    """The tries behind each reply: geometric failures on the primary; three failures mean fallback."""
    n = len(numbers)
    if spec.failure_rate > 0:
        failed = np.minimum(np.floor(np.log(rng.random(n)) / np.log(spec.failure_rate)), 3).astype(np.int64)
    else:
        failed = np.zeros(n, dtype=np.int64)
    tries = failed + 1
    row = np.repeat(np.arange(n), tries)
    index = np.arange(len(row)) - np.repeat(np.cumsum(tries) - tries, tries)  # 0.. within the reply
    is_ok = index == failed[row]
    served = provider[row]
    tried = np.where(~is_ok & (failed[row] == 3), 1 - served, served)  # fallback: failures were on the other one
    latency = rng.integers(50, 300, size=len(row)).astype(np.int32)
    start = stamp[row] - (failed[row] - index) * 400_000
    return pa.table({
        "id": _ids(f"evt_{spec.tag}a", np.arange(len(row)) + int(numbers[0]) * 4),
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


def _tenants_and_agents(gw: Gateway, spec: SyntheticSpec) -> tuple[list[str], list[list[str]]]:
    tenant_ids, agent_ids = [], []
    for t in range(spec.tenants):
        tenant, _ = gw.create_tenant(f"Synthetic {spec.tag} {t:03d}")
        client = gw.as_tenant(tenant.id)
        agents = [client.create_agent(name=f"Agent {a + 1}", primary_provider="vendorA", fallback_provider="vendorB",
                                      system_prompt="You are a synthetic agent.").id
                  for a in range(spec.agents_per_tenant)]
        tenant_ids.append(tenant.id)
        agent_ids.append(agents)
    return tenant_ids, agent_ids


def generate(gw: Gateway, spec: SyntheticSpec, tenant_ids: Sequence[str] | None = None,
             agent_ids: Sequence[Sequence[str]] | None = None) -> SyntheticResult:
    """Append ``spec.events`` usage events (and their tries) for existing tenants and agents."""
    if tenant_ids is None or agent_ids is None:
        raise ValidationError("generate needs tenant_ids and agent_ids; populate() creates them")
    prices = {p: gw.prices.price_per_1k(p) for p in ("vendorA", "vendorB")}
    result = SyntheticResult(list(tenant_ids))
    events = [0] * len(tenant_ids)
    units = [0] * len(tenant_ids)
    for usage, attempts, counts, cost_units in _ahead(month_batches(spec, tenant_ids, agent_ids, prices)):
        result.usage_rows += gw.store.bulk_insert("usage_events", usage)
        if attempts is not None:
            result.attempt_rows += gw.store.bulk_insert("provider_call_events", attempts)
        for i in np.flatnonzero(counts):
            events[i] += int(counts[i])
            units[i] += int(cost_units[i])
    result.per_tenant = {t: (events[i], Decimal(units[i]) * _COST_UNIT) for i, t in enumerate(tenant_ids)}
    result.cost_usd = sum((c for _, c in result.per_tenant.values()), Decimal(0))
    return result


def populate(gw: Gateway, spec: SyntheticSpec) -> SyntheticResult:
    """Create ``spec.tenants`` tenants with their agents, then generate their usage."""
    spec.validate()
    tenant_ids, agent_ids = _tenants_and_agents(gw, spec)
    return generate(gw, spec, tenant_ids, agent_ids)

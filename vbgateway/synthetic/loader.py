"""Writing the generator's months into the store: whole row groups, both tables at once, the next month built meanwhile.

Rows reach DuckDB through ``Store.bulk_insert_many`` one calendar month at a
time, usage and attempt rows in one call (two inserts side by side, all or
nothing), while a worker thread builds the next month. Every chunk handed
over is a whole number of DuckDB row groups, so that no checkpoint has to
merge and recompress partial ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pyarrow as pa

from ..errors import ValidationError
from .generator import MonthBatch, month_batches
from .spec import SyntheticResult, SyntheticSpec

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["ROW_GROUP_ROWS", "generate"]

T = TypeVar("T")
ROW_GROUP_ROWS = 122_880  # DuckDB's rows per row group (its default; only speed depends on it)
_COST_UNIT = Decimal(1).scaleb(-10)


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


def _whole_row_groups(tail: pa.Table | None, table: pa.Table) -> tuple[pa.Table | None, pa.Table]:
    """(the leading whole row groups of ``tail + table``, or None; the rows left over).

    DuckDB writes a bulk insert straight to the file as compressed row groups, but ends
    every insert, and every Arrow chunk, with a partial row group; the next checkpoint
    merges those partials and compresses their rows a second time.
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


def _aligned(batches: Iterator[MonthBatch]) -> Iterator[tuple[pa.Table | None, pa.Table | None, np.ndarray, np.ndarray]]:
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

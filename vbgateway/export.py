"""``vbgateway export``: every usage event as Parquet, partitioned for a data lake.

Layout is hive-style, ``DIR/tenant_id=<id>/month=<YYYY-MM>/part-0.parquet``,
which DuckDB, Spark, Trino, Athena and pandas read as two partition columns.
Money stays ``decimal128(24, 10)``; timestamps stay UTC.

The export is one consistent snapshot (one read-only gateway, read month by
month so memory stays bounded), written to a temporary folder beside ``DIR``
and swapped in at the end, so a reader never sees half an export. ``DIR``
must be new, empty, or an earlier export (it holds our manifest): anything
else is refused rather than deleted.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import __version__
from .clock import SystemClock
from .errors import ValidationError
from .gateway import Gateway
from .reports import open_db

__all__ = ["MANIFEST", "ExportResult", "export_usage", "month_table"]

MANIFEST = "_vbgateway_export.json"
# Columns whose values repeat within a tenant's month. Dictionary-encoding the unique ones (ids, times,
# costs) only to fall back to plain costs time and space in files of a few thousand rows.
_DICTIONARY = ["session_id", "agent_id", "provider", "channel", "usd_per_1k_tokens"]
_WRITERS = 2  # Parquet encoding dominates the export; it releases the GIL, so two files are written at once


@dataclass(frozen=True)
class ExportResult:
    """What was written: rows, files, the exact total (to check against the database) and where."""

    path: Path
    rows: int
    files: int
    cost_usd: Decimal


def month_table(gw: Gateway, month_start: datetime, month_end: datetime, *, label: bool = True) -> pa.Table:
    """The usage events of one month as Arrow, with its ``month`` label as a column.

    No ORDER BY: DuckDB scans in insertion order, which is the gateway's time
    order, and partitioning by tenant keeps that order inside each file.
    The label is a constant per query (formatting a date per row costs more
    than the rest of the query); ``label=False`` leaves it out altogether
    (the export writes it only as a folder name).
    """
    query = f"SELECT *{', ? AS month' if label else ''} FROM usage_events WHERE created_at >= ? AND created_at < ?"
    params = [f"{month_start:%Y-%m}"] * label + [month_start, month_end]
    arrow = getattr(gw, "arrow", None)  # a core Arrow path, when the gateway offers one, skips pandas
    table = arrow(query, params) if arrow is not None else pa.Table.from_pandas(gw.sql(query, params),
                                                                                 preserve_index=False)
    # plain (32-bit offset) strings: Parquet writing is markedly faster than with large_string
    return table.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
                                 for f in table.schema]))


def _by_tenant(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """(tenant id, its rows without the partition columns) per tenant, rows in scan order.

    Bulk-loaded months arrive grouped by tenant, so each tenant is a zero-copy slice; otherwise
    a stable sort on the tenant's dictionary code groups them first. Cheaper than the dataset
    writer's per-batch hash partitioning, and it keeps every file in the table's (time) order.
    """
    encoded = pc.dictionary_encode(table.column("tenant_id")).combine_chunks()
    codes = encoded.indices.to_numpy()
    if np.count_nonzero(codes[1:] != codes[:-1]) + 1 != len(encoded.dictionary):
        order = np.argsort(codes, kind="stable")
        table, codes = table.take(order), codes[order]
    bounds = [0, *(np.flatnonzero(codes[1:] != codes[:-1]) + 1).tolist(), len(codes)]
    body = table.drop_columns([c for c in ("tenant_id", "month") if c in table.column_names])
    return [(encoded.dictionary[int(codes[lo])].as_py(), body.slice(lo, hi - lo)) for lo, hi in itertools.pairwise(bounds)]


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, use_dictionary=_DICTIONARY, row_group_size=1 << 20)


def _months(gw: Gateway) -> list[tuple[datetime, datetime]]:
    """[first, next) of every calendar month from the oldest event to the newest (min/max read zonemaps only)."""
    span = gw.sql("SELECT min(created_at) AS lo, max(created_at) AS hi FROM usage_events").iloc[0]
    if pd.isna(span.lo):
        return []
    first = datetime(span.lo.year, span.lo.month, 1, tzinfo=UTC)
    out = []
    while first <= span.hi:
        nxt = datetime(first.year + first.month // 12, first.month % 12 + 1, 1, tzinfo=UTC)
        out.append((first, nxt))
        first = nxt
    return out


def _check_target(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).exists())):
        raise ValidationError(f"{out} exists and is not a vbgateway export; choose a new or empty folder",
                              details={"path": str(out)})


def export_usage(db: str | Path, out: str | Path, *, wait_s: float = 60.0) -> ExportResult:
    """Write every usage event under ``out`` as hive-partitioned Parquet; returns what was written."""
    target = Path(out).expanduser().resolve()
    _check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    work.chmod(0o755)
    rows, total, files = 0, Decimal(0), 0
    try:
        # Read month m+1 from DuckDB while month m's files are encoded and written (all release the GIL).
        with open_db(db, wait_s=wait_s) as gw, ThreadPoolExecutor(max_workers=_WRITERS) as writers:
            pending: list[Future[None]] = []
            for begin, end in _months(gw):
                table = month_table(gw, begin, end, label=False)
                if table.num_rows == 0:
                    continue
                rows += table.num_rows
                total += Decimal(str(pc.sum(table.column("cost_usd")).as_py() or 0))
                for done in pending:
                    done.result()
                pending = [writers.submit(_write, part, work / f"tenant_id={quote(tenant, safe='')}"
                                          / f"month={begin:%Y-%m}" / f"part-{begin:%Y%m}-0.parquet")
                           for tenant, part in _by_tenant(table)]
            for done in pending:
                done.result()
        files = sum(1 for _ in work.rglob("*.parquet"))
        manifest = {"rows": rows, "cost_usd": str(total), "files": files, "version": __version__,
                    "generated_at": SystemClock().now().isoformat(), "layout": "tenant_id=<id>/month=<YYYY-MM>"}
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            target.rename(old)
        work.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ExportResult(target, rows, files, total)

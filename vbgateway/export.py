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

import json
import os
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from . import __version__
from .clock import SystemClock
from .errors import ValidationError
from .gateway import Gateway
from .reports import open_db

__all__ = ["ExportResult", "MANIFEST", "export_usage", "month_table"]

MANIFEST = "_vbgateway_export.json"
_PARTITIONING = ds.partitioning(pa.schema([("tenant_id", pa.string()), ("month", pa.string())]), flavor="hive")


@dataclass(frozen=True)
class ExportResult:
    """What was written: rows, files, the exact total (to check against the database) and where."""

    path: Path
    rows: int
    files: int
    cost_usd: Decimal


def month_table(gw: Gateway, month_start: datetime, month_end: datetime) -> pa.Table:
    """The usage events of one month as Arrow, with its ``month`` label as a column.

    No ORDER BY: DuckDB scans in insertion order, which is the gateway's time
    order, and partitioning by tenant keeps that order inside each file.
    The label is a constant per query (formatting a date per row costs more
    than the rest of the query).
    """
    query = "SELECT *, ? AS month FROM usage_events WHERE created_at >= ? AND created_at < ?"
    params = [f"{month_start:%Y-%m}", month_start, month_end]
    arrow = getattr(gw, "arrow", None)  # a core Arrow path, when the gateway offers one, skips pandas
    table = arrow(query, params) if arrow is not None else pa.Table.from_pandas(gw.sql(query, params),
                                                                                 preserve_index=False)
    # plain (32-bit offset) strings: Parquet writing is markedly faster than with large_string
    return table.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
                                 for f in table.schema]))


def _write(table: pa.Table, folder: Path, tag: str) -> None:
    ds.write_dataset(table, folder, format="parquet", partitioning=_PARTITIONING,
                     basename_template=f"part-{tag}-{{i}}.parquet", existing_data_behavior="overwrite_or_ignore",
                     max_rows_per_group=1 << 20)


def _months(gw: Gateway) -> list[tuple[datetime, datetime]]:
    """[first, next) of every calendar month from the oldest event to the newest (min/max read zonemaps only)."""
    span = gw.sql("SELECT min(created_at) AS lo, max(created_at) AS hi FROM usage_events").iloc[0]
    if pd.isna(span.lo):
        return []
    first = datetime(span.lo.year, span.lo.month, 1, tzinfo=timezone.utc)
    out = []
    while first <= span.hi:
        nxt = datetime(first.year + first.month // 12, first.month % 12 + 1, 1, tzinfo=timezone.utc)
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
        # Read month m+1 from DuckDB while month m is encoded and written (both release the GIL).
        with open_db(db, wait_s=wait_s) as gw, ThreadPoolExecutor(max_workers=1) as writer:
            pending: Future[None] | None = None
            for begin, end in _months(gw):
                table = month_table(gw, begin, end)
                if table.num_rows == 0:
                    continue
                rows += table.num_rows
                total += Decimal(str(pc.sum(table.column("cost_usd")).as_py() or 0))
                if pending is not None:
                    pending.result()
                pending = writer.submit(_write, table, work, f"{begin:%Y%m}")
            if pending is not None:
                pending.result()
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

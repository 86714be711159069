"""Compacting a lake: one file per table, tenant and month instead of one per run and instance.

Each run writes a file for every (tenant, month) of every table from each
of its instances, so a year of runs holds hundreds of thousands of small
files (docs/scale.md), and DuckDB opens every one a query reads.
``compact_lake`` rewrites the committed runs' files as one file per
partition, its rows in time order (which keeps the row groups' min/max on
``created_at`` narrow), and the runs' tenants and agents as one file each
(one row per id, the latest run's), all under a new run id. It checks that
every table keeps exactly the rows the manifest counts, then names that one
run in the manifest in place of those it replaced (kept under
``compacted``), in one atomic rewrite, and only then removes the replaced
files. A compaction stopped before that rewrite leaves the lake as it was
(its files are in no committed run, so nothing reads them). Like a run's
commit, it is a write: one client writes to a lake at a time, and a reader
opened before it should be opened again.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .clock import SystemClock
from .errors import DatabaseError
from .lake import (
    CONTROL_TABLES,
    LAKE_TABLES,
    committed_manifest,
    filesystem,
    part_name,
    put_parquet,
    run_files,
    write_manifest,
)
from .store.tables import Table

__all__ = ["Compaction", "compact_lake"]

Progress = Callable[[int, int], None]  # (files written so far, files to write)


@dataclass(frozen=True)
class Compaction:
    """What a compaction did: runs merged into ``run_id``, files before and after (None: nothing to do)."""

    run_id: str | None
    runs: int
    files_before: int
    files_after: int
    rows: dict[str, int]


def _runs_files(fs: Any, root: str, runs: list[dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """Per table, per folder (a partition, or the table's own), the committed runs' files in run order."""
    found: dict[str, dict[str, list[str]]] = {}
    for table in LAKE_TABLES:
        folders: dict[str, list[str]] = defaultdict(list)
        for run in runs:
            if run["rows"].get(table.name, 0):
                for path in sorted(fs.glob(f"{root}/{run_files(table, run['run_id'])}")):
                    folders[path.rsplit("/", 1)[0]].append(path)
        found[table.name] = dict(folders)
    return found


def _read(fs: Any, paths: list[str]) -> pa.Table:
    parts = []
    for path in paths:
        with fs.open(path, "rb") as source:
            parts.append(pq.read_table(source))
    return pa.concat_tables(parts, promote_options="default")


def _latest_per_id(fs: Any, root: str, table: Table, runs: list[dict[str, Any]]) -> pa.Table:
    """The control rows of every run, one per id: the latest run's (a run renames nothing it did not see)."""
    rows = _read(fs, [f"{root}/{run_files(table, run['run_id'])}" for run in reversed(runs)])
    seen: set[str] = set()
    keep = []
    for index, row_id in enumerate(rows.column("id").to_pylist()):
        if row_id not in seen:
            seen.add(row_id)
            keep.append(index)
    return rows.take(keep).sort_by("id")


def compact_lake(lake: str | Path, progress: Progress | None = None) -> Compaction:
    """Rewrite the lake's committed runs as one run with one file per table, tenant and month."""
    fs, root = filesystem(lake)
    manifest = committed_manifest(lake)
    runs: list[dict[str, Any]] = manifest["runs"]
    files = _runs_files(fs, root, runs)
    before = sum(len(paths) for folders in files.values() for paths in folders.values())
    before += len(runs) * len(CONTROL_TABLES)
    expected = {t.name: sum(run["rows"].get(t.name, 0) for run in runs) for t in LAKE_TABLES}
    if len(runs) <= 1 and all(len(paths) <= 1 for folders in files.values() for paths in folders.values()):
        return Compaction(None, len(runs), before, before, expected)
    run_id = uuid.uuid4().hex[:12]
    name = part_name(run_id, 0)
    total = sum(len(folders) for folders in files.values()) + len(CONTROL_TABLES)
    written: dict[str, int] = {}
    done = 0
    for table_name, folders in files.items():
        written[table_name] = 0
        for folder, paths in folders.items():
            rows = _read(fs, paths)
            if "created_at" in rows.column_names:
                rows = rows.sort_by("created_at")  # stable: within a moment, the runs' own order
            put_parquet(fs, rows, f"{folder}/{name}")
            written[table_name] += rows.num_rows
            done += 1
            if progress is not None:
                progress(done, total)
    if written != expected:
        raise DatabaseError(f"compacting {lake} found other rows than its manifest counts; nothing was changed",
                            details={"manifest": expected, "files": written, "run_id": run_id})
    for table in CONTROL_TABLES:
        put_parquet(fs, _latest_per_id(fs, root, table, runs), f"{root}/{run_files(table, run_id)}")
        done += 1
        if progress is not None:
            progress(done, total)
    merged = {"run_id": run_id, "rows": expected, "compacted_at": SystemClock().now().isoformat(), "compacted": runs}
    write_manifest(lake, {**manifest, "runs": [merged]})
    replaced = [path for folders in files.values() for paths in folders.values() for path in paths]
    replaced += [f"{root}/{run_files(table, run['run_id'])}" for run in runs for table in CONTROL_TABLES]
    fs.rm(replaced)
    return Compaction(run_id, len(runs), before, done, expected)

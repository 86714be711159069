"""A lake: a simulation's rows as Hive-partitioned Parquet, and DuckDB over it as if it were a database file.

A year for a thousand tenants is more than one DuckDB file on the machine
that asked for it should hold, so a run on a cluster can write its rows
where the workers are (a shared folder, ``s3://...`` with ``s3fs``): each
data table under ``<lake>/<table>/tenant_id=<id>/month=<YYYY-MM>/``, the
layout of ``vbgateway export`` (which writes ``usage_events`` alone, at the
root). Every gateway instance writes its own files, named after the run and
the instance (``part-<run>-<instance>.parquet``): a task that Dask reruns
writes the same names again, never a second copy. A run counts once the
client has committed it to the manifest (``_vbgateway_lake.json``); readers
see the files of committed runs only, so a run that failed halfway adds
nothing.

Reading (``open_source``): a database file opens as ever; a lake (or an
export folder) opens as an in-memory database whose data tables are views
over the Parquet files, so the reports and ``analytics`` compute the same
figures, to the cent, from either.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__
from .clock import SystemClock
from .errors import DatabaseError, ValidationError
from .store.merge import MERGED_TABLES
from .store.tables import AGENTS, TENANTS, Table
from .store.views import tables_as_views

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["CONTROL_TABLES", "EXPORT_MANIFEST", "LAKE_MANIFEST", "LAKE_TABLES", "Reader", "check_lake_target",
           "commit_run", "committed_manifest", "filesystem", "is_lake", "is_local_fs", "lake_files", "lake_views",
           "open_lake", "open_source", "part_name", "put_parquet", "read_manifest", "run_files", "write_manifest",
           "write_part"]

LAKE_MANIFEST = "_vbgateway_lake.json"
EXPORT_MANIFEST = "_vbgateway_export.json"  # ``vbgateway export``'s folder: usage events alone, at the root
LAKE_TABLES: tuple[Table, ...] = MERGED_TABLES  # what instances write; tenants and agents come from the client
CONTROL_TABLES: tuple[Table, ...] = (TENANTS, AGENTS)  # names for reports (no key hashes leave the database)
_PARTITIONS = ("tenant_id", "created_at")  # a table with both is partitioned by tenant and month
_DICTIONARY = ["tenant_id", "session_id", "agent_id", "provider", "channel", "status", "role", "usd_per_1k_tokens"]
_READ_BATCH_ROWS = 200_000
_RUN_ID = re.compile(r"[0-9a-z]{1,64}")  # what run ids are made of (no glob or path characters)

# A query's rows as Arrow: (sql, params) -> table; a worker passes its instance database's connection.
Reader = Callable[[str, list[Any]], pa.Table]


# ---------------------------------------------------------------------------- where


def filesystem(url: str | Path) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) of a folder URL or a local path."""
    try:
        import fsspec
    except ImportError as exc:  # the cluster extra
        raise DatabaseError("lakes and stages need fsspec: pip install 'vbgateway[cluster]'") from exc

    fs, path = fsspec.core.url_to_fs(str(url))
    return fs, str(path).rstrip("/")


def is_local_fs(fs: Any) -> bool:
    """Whether an fsspec filesystem is this machine's disk (paths as they are, folders that exist)."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def is_lake(source: str | Path) -> bool:
    """Whether ``source`` names a lake or an export folder (a URL, or a local folder with a manifest)."""
    text = str(source)
    if "://" in text and not text.startswith("file://"):
        return True
    path = Path(text.removeprefix("file://")).expanduser()
    return path.is_dir() and ((path / LAKE_MANIFEST).exists() or (path / EXPORT_MANIFEST).exists())


def _partitioned(table: Table) -> bool:
    return all(name in table.column_names for name in _PARTITIONS)


def part_name(run_id: str, index: int) -> str:
    return f"part-{run_id}-{index:03d}.parquet"


def run_files(table: Table, run_id: str) -> str:
    """Where a run's files of ``table`` are, from the lake's root: the one file of a control table, else a
    pattern of the instances' files (``part_name``), in every tenant and month folder when partitioned."""
    if table in CONTROL_TABLES:
        return f"{table.name}/part-{run_id}.parquet"
    where = "tenant_id=*/month=*/" if _partitioned(table) else ""
    return f"{table.name}/{where}part-{run_id}-*.parquet"


# ---------------------------------------------------------------------------- writing (workers)


def _months(read: Reader, table: Table) -> list[tuple[datetime, datetime]]:
    """[first, next) of every calendar month holding rows of ``table`` (min/max read zonemaps only)."""
    span = read(f"SELECT min(created_at) AS lo, max(created_at) AS hi FROM {table.name}", [])
    lo, hi = span.column("lo")[0].as_py(), span.column("hi")[0].as_py()
    if lo is None:
        return []
    first = datetime(lo.year, lo.month, 1, tzinfo=UTC)
    months = []
    while first <= hi:
        following = datetime(first.year + first.month // 12, first.month % 12 + 1, 1, tzinfo=UTC)
        months.append((first, following))
        first = following
    return months


def put_parquet(fs: Any, rows: pa.Table, path: str) -> None:
    """Write one Parquet file under a temporary name and move it into place: a killed writer leaves no part."""
    parent = path.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    temporary = f"{parent}/.{uuid.uuid4().hex}.tmp"
    try:
        with fs.open(temporary, "wb") as sink:
            pq.write_table(rows, sink, use_dictionary=[c for c in _DICTIONARY if c in rows.column_names],
                           row_group_size=1 << 20)
        fs.mv(temporary, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(temporary)
        raise


def write_part(read: Reader, lake: str | Path, run_id: str, index: int) -> dict[str, int]:
    """Write one gateway instance's data rows into the lake; returns rows written per table.

    Runs where the instance ran (a Dask worker), from its own database.
    Each (tenant, month) of each table gets one file of this instance, in
    the table's scan (time) order, without the partition columns, as
    ``vbgateway export`` writes them.
    """
    from .export import _by_tenant  # the export's split by tenant: one zero-copy slice per tenant

    fs, root = filesystem(lake)
    written: dict[str, int] = {}
    name = part_name(run_id, index)
    for table in LAKE_TABLES:
        columns = ", ".join(table.column_names)
        count = 0
        if not _partitioned(table):
            rows = read(f"SELECT {columns} FROM {table.name}", [])
            if rows.num_rows:
                put_parquet(fs, rows, f"{root}/{table.name}/{name}")
            written[table.name] = rows.num_rows
            continue
        for begin, end in _months(read, table):
            rows = read(f"SELECT {columns} FROM {table.name} WHERE created_at >= ? AND created_at < ?", [begin, end])
            count += rows.num_rows
            for tenant, part in _by_tenant(rows):
                put_parquet(fs, part, f"{root}/{table.name}/tenant_id={quote(tenant, safe='')}/month={begin:%Y-%m}/{name}")
        written[table.name] = count
    return written


# ---------------------------------------------------------------------------- committing (the client)


def read_manifest(lake: str | Path) -> dict[str, Any] | None:
    """The lake's manifest, or None where there is none yet."""
    fs, root = filesystem(lake)
    path = f"{root}/{LAKE_MANIFEST}"
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as handle:
        text = handle.read()
    try:
        manifest: dict[str, Any] = json.loads(text)
        runs = manifest["runs"]
        if not isinstance(runs, list):
            raise TypeError("runs is not a list")
        for run in runs:  # a run id becomes part of file patterns, and the files it names may be removed
            rows = run["rows"]
            if not (isinstance(run["run_id"], str) and _RUN_ID.fullmatch(run["run_id"]) and isinstance(rows, dict)
                    and all(type(n) is int and n >= 0 for n in rows.values())):
                raise ValueError(f"run {str(run.get('run_id'))[:40]!r}")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DatabaseError(f"the manifest of the lake at {lake} is not one vbgateway wrote ({exc})",
                            details={"lake": str(lake), "manifest": LAKE_MANIFEST}) from exc
    return manifest


def committed_manifest(lake: str | Path) -> dict[str, Any]:
    """The manifest of a lake a command is to change; an export folder (VALIDATION_ERROR) or nothing at all
    (DATABASE_ERROR) is refused."""
    manifest = read_manifest(lake)
    if manifest is None:
        fs, root = filesystem(lake)
        if fs.exists(f"{root}/{EXPORT_MANIFEST}"):
            raise ValidationError(f"{lake} is an export folder, not a lake: one file per tenant and month already",
                                  details={"lake": str(lake)})
        raise DatabaseError(f"no vbgateway lake at {lake}", details={"lake": str(lake)})
    return manifest


def check_lake_target(lake: str | Path) -> None:
    """Refuse, before a run starts, a local folder that holds something else than a lake (VALIDATION_ERROR),
    or a lake whose manifest vbgateway did not write (DATABASE_ERROR)."""
    fs, root = filesystem(lake)
    if fs.exists(root) and not fs.isdir(root):
        raise ValidationError(f"{lake} is a file, not a lake folder", details={"lake": str(lake)})
    if fs.exists(root) and fs.ls(root) and not fs.exists(f"{root}/{LAKE_MANIFEST}"):
        raise ValidationError(f"{lake} exists and is not a vbgateway lake; choose a new or empty folder",
                              details={"lake": str(lake)})
    read_manifest(lake)  # one the run could not add itself to is refused now, not after the run (DATABASE_ERROR)


def commit_run(lake: str | Path, run_id: str, control: dict[str, pa.Table], rows: dict[str, int],
               about: dict[str, Any]) -> dict[str, Any]:
    """Make a run's files count: write the tenants and agents, then add the run to the manifest.

    Called once by the client after every task ended well. ``rows``: per
    table, the rows all instances wrote (readers skip tables without any).
    One run at a time per lake: the manifest is read, extended and rewritten.
    """
    fs, root = filesystem(lake)
    for table in CONTROL_TABLES:
        put_parquet(fs, control[table.name], f"{root}/{run_files(table, run_id)}")
    manifest = read_manifest(lake) or {"layout": "<table>/tenant_id=<id>/month=<YYYY-MM>/part-<run>-<instance>.parquet",
                                       "runs": []}
    manifest["version"] = __version__
    manifest["runs"] = [run for run in manifest["runs"] if run["run_id"] != run_id]
    manifest["runs"].append({"run_id": run_id, "rows": rows, **about})
    write_manifest(lake, manifest)
    return manifest


def write_manifest(lake: str | Path, manifest: dict[str, Any]) -> None:
    """Replace the manifest in one move: a reader sees the old one or the new one, never half of either."""
    fs, root = filesystem(lake)
    temporary = f"{root}/.{LAKE_MANIFEST}.{uuid.uuid4().hex}.tmp"
    with fs.open(temporary, "wb") as sink:
        sink.write((json.dumps(manifest, indent=2, default=str) + "\n").encode())
    fs.mv(temporary, f"{root}/{LAKE_MANIFEST}")


# ---------------------------------------------------------------------------- reading


def lake_files(lake: str | Path) -> dict[str, list[str]]:
    """Per table, the file patterns of the committed runs (an export folder: its usage events)."""
    fs, root = filesystem(lake)
    prefix = root if is_local_fs(fs) else f"{fs.unstrip_protocol(root)}"
    manifest = read_manifest(lake)
    if manifest is None:
        if not fs.exists(f"{root}/{EXPORT_MANIFEST}"):
            raise DatabaseError(f"no vbgateway lake or export at {lake}", details={"lake": str(lake)})
        return {"usage_events": [f"{prefix}/tenant_id=*/month=*/*.parquet"]}
    patterns: dict[str, list[str]] = {}
    for run in manifest["runs"]:
        run_id = run["run_id"]
        for table in (*LAKE_TABLES, *CONTROL_TABLES):
            if table in CONTROL_TABLES or run["rows"].get(table.name, 0):
                patterns.setdefault(table.name, []).append(f"{prefix}/{run_files(table, run_id)}")
    return patterns


def _typed(table: Table, source: str) -> str:
    return f"SELECT {', '.join(f'CAST({c.name} AS {c.sql_type}) AS {c.name}' for c in table.columns)} FROM {source}"


def _parquet(patterns: list[str], hive: bool) -> str:
    listed = ", ".join("'" + p.replace("'", "''") + "'" for p in patterns)
    options = ", hive_partitioning = true, hive_types = {'tenant_id': VARCHAR, 'month': VARCHAR}" if hive else ""
    return f"read_parquet([{listed}]{options})"


def lake_views(con: duckdb.DuckDBPyConnection, lake: str | Path) -> None:
    """Replace the data tables of ``con`` (a migrated database) by views over the lake, and load its tenants and agents.

    Each view has its table's columns and types, so a query written for
    the database file reads the lake unchanged; DuckDB prunes partitions
    on ``tenant_id`` and row groups on ``created_at``.
    """
    fs, _ = filesystem(lake)
    if not is_local_fs(fs):
        con.register_filesystem(fs)
    patterns = lake_files(lake)
    views = {table: _typed(table, _parquet(patterns[table.name], _partitioned(table))) if table.name in patterns
             else None for table in LAKE_TABLES}
    control = {table: _typed(table, _parquet(patterns[table.name], False)) for table in CONTROL_TABLES
               if table.name in patterns}
    tables_as_views(con, views, control)


@contextmanager
def open_lake(lake: str | Path) -> Iterator[Gateway]:
    """A read-only gateway over a lake: ``gw.sql``, ``analytics`` and the reports work as on a database file."""
    from .gateway import Gateway
    from .store import Store

    con = duckdb.connect(":memory:")
    try:
        store = Store(con, now=SystemClock().now(), journal=False)
        try:
            lake_views(con, lake)
        except duckdb.Error as exc:
            store.close()
            raise DatabaseError(f"cannot read the lake at {lake}: {exc}", details={"lake": str(lake)}) from exc
        store.read_only = True  # nothing can be written through it: the rows are the lake's
        gw = Gateway(store)
        try:
            yield gw
        finally:
            gw.close()
    finally:
        con.close()


@contextmanager
def open_source(source: str | Path, wait_s: float = 60.0) -> Iterator[Gateway]:
    """A read-only gateway on a database file, a lake or an export folder: one reading layer for all of them."""
    from .reports.data import open_db  # which opens a lake with ``open_lake``

    with open_db(source, wait_s=wait_s) as gw:
        yield gw

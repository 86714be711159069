"""Appending the data rows of other databases to a store, in the store's transaction (``Store.merging``).

A simulation's gateway instances each write a database of their own; once
an instance is done its rows are appended to the target database. The
tables and their column lists come from the table definitions, so a merge
names every column and cannot mix them up. The merged usage events and
messages are added to the target's daily aggregates in the same transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from . import aggregates
from .connection import database_error
from .tables import BUDGET_ALERTS, JOURNALED_TABLES, MESSAGES, USAGE_EVENTS

if TYPE_CHECKING:
    import pyarrow as pa

    from .database import Store

__all__ = ["COPY_BATCH_ROWS", "MERGED_TABLES", "NO_VACUUM", "Merge", "merge_settings"]

# What a gateway instance adds; the tenants, keys and agents it shares are there. Not its budget alerts:
# an instance spends a share of a tenant's budget, so the run's alerts are found on the merged rows.
MERGED_TABLES = tuple(t for t in JOURNALED_TABLES if t is not BUDGET_ALERTS)
COPY_BATCH_ROWS = 200_000  # rows per Arrow batch when copying from an open store (bounded memory)
# No vacuum on the databases a simulation writes. DuckDB's checkpoints compact (vacuum) partly
# filled row groups; every batch leaves some, and the same ones were rewritten again and again,
# more of them as a file grew. One instance of the benchmark month spent 22 s in checkpoints
# (0.3 s each early in the month, 2.7 s at its end; 6 s in all without vacuum). The target's
# last checkpoint rewrote the partly filled row groups of the parallel merge and left 12% of a
# month's file as freed blocks (291 MB instead of 254). Nothing here deletes rows, so there is
# nothing else for vacuum to reclaim. A connection handed to ``simulate`` keeps its own setting
# outside the merge.
NO_VACUUM: dict[str, bool | int | str] = {"max_vacuum_tasks": 0}
_ATTACHED = "vb_instance"
# How the rows of a merged table reach the daily aggregates (in the merge's transaction).
_AGGREGATES: dict[str, Callable[[duckdb.DuckDBPyConnection, str], None]] = {
    USAGE_EVENTS.name: aggregates.add_usage, MESSAGES.name: aggregates.add_messages}
_COPY = "_vb_copy"
_ROWS = "_vb_copied_rows"


def merge_settings() -> dict[str, bool | int | str]:
    """DuckDB settings while merging: rows unordered (appended on all of DuckDB's threads, which
    halves a month's merge) and no vacuum (``NO_VACUUM``)."""
    return {"preserve_insertion_order": False, **NO_VACUUM}


class Merge:
    """Adds databases' rows to the target inside ``Store.merging``'s transaction, one call at a time."""

    def __init__(self, target: duckdb.DuckDBPyConnection) -> None:
        self._target = target

    def add_file(self, path: str | Path) -> None:
        """Append every data row of the database file ``path`` (attached read-only meanwhile)."""
        con = self._target
        try:
            con.execute(f"ATTACH ? AS {_ATTACHED} (READ_ONLY)", [str(path)])
        except duckdb.Error as exc:
            raise database_error(exc, f"cannot read {path}", Path(path)) from exc
        try:
            for table in MERGED_TABLES:
                con.execute(table.copy_sql(f"{_ATTACHED}.{table.name}"))
            aggregates.add_usage(con, f"{_ATTACHED}.{USAGE_EVENTS.name}")
            aggregates.add_messages(con, f"{_ATTACHED}.{MESSAGES.name}")
        except duckdb.Error as exc:
            raise database_error(exc, f"cannot merge the rows of {path}", Path(path)) from exc
        finally:
            with contextlib.suppress(duckdb.Error):  # the transaction failed: detached when it rolls back
                con.execute(f"DETACH {_ATTACHED}")

    def add_store(self, source: Store) -> None:
        """Append every data row of another open store (an in-memory one), streamed in bounded batches."""
        for table in MERGED_TABLES:
            self.add_rows(table.name, source._arrow_reader(f"SELECT {', '.join(table.column_names)} FROM {table.name}",
                                                           COPY_BATCH_ROWS))

    def add_rows(self, table_name: str, rows: pa.RecordBatchReader | pa.Table) -> None:
        """Append Arrow rows (the table's columns, by name) to data table ``table_name``.

        How rows that were made elsewhere arrive: an instance run on another
        machine hands its tables back as Arrow streams or Parquet files. Usage
        events and messages are added to the daily aggregates in the same
        transaction; a stream is read once and the aggregates read their rows
        more than once, so those rows are kept in a temporary table meanwhile.
        """
        table = next((t for t in MERGED_TABLES if t.name == table_name), None)
        if table is None:
            raise ValueError(f"{table_name!r} is not a data table a simulation merges")
        add = _AGGREGATES.get(table.name)
        con = self._target
        con.register(_COPY, rows)
        try:
            if add is None:
                con.execute(table.copy_sql(_COPY))
            else:
                con.execute(f"CREATE TEMP TABLE {_ROWS} AS SELECT * FROM {_COPY}")
                try:
                    con.execute(table.copy_sql(_ROWS))
                    add(con, _ROWS)
                finally:
                    con.execute(f"DROP TABLE IF EXISTS {_ROWS}")
        except duckdb.Error as exc:
            raise database_error(exc, f"cannot merge the rows of {table.name}") from exc
        finally:
            con.unregister(_COPY)

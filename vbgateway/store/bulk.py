"""Rows that go straight into DuckDB, bypassing the journal: bulk imports, copied control rows, merges.

These are not replies anyone was promised: each operation lands whole or not
at all, in one transaction, after what is pending was applied (``flush``).
Usage events and messages are added to the daily aggregates in that same
transaction (``aggregates.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import duckdb

from ..errors import ValidationError
from . import aggregates
from .connection import transaction, translated
from .handle import DuckHandle
from .merge import Merge, merge_settings
from .settings import temporarily
from .tables import BULK_TABLES, CONTROL_TABLES, MESSAGES, USAGE_EVENTS, Table, table_named

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["arrow_reader", "bulk_insert", "bulk_insert_many", "check_bulk_tables", "insert_rows", "merging",
           "table_rows"]

_BULK = {t.name for t in BULK_TABLES}
_COPYABLE = {t.name for t in (*CONTROL_TABLES, *BULK_TABLES)}
Flush = Callable[[], None]


def check_bulk_tables(tables: Iterable[str], operation: str) -> None:
    """VALIDATION_ERROR unless ``tables`` are one or more data-plane tables that take bulk rows."""
    names = sorted(tables)
    if not names or not set(names) <= _BULK:
        raise ValidationError(f"{operation} takes tables among {sorted(_BULK)}", details={"tables": names})


def bulk_insert(handle: DuckHandle, flush: Flush, table: str, rows: pa.Table) -> int:
    """Append an Arrow table to a data-plane table; columns are matched by name."""
    check_bulk_tables([table], "bulk_insert")
    with handle.lock:
        flush()
        con = handle.connection()
        con.register("_vb_bulk", rows)  # outside the transaction: a failed one refuses to unregister it
        try:
            with handle.transaction(), translated(f"cannot insert {rows.num_rows} rows into {table}", handle.path):
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _vb_bulk").fetchall()
                _add_to_aggregates(con, table)
        finally:
            con.unregister("_vb_bulk")
    return int(rows.num_rows)


def bulk_insert_many(handle: DuckHandle, flush: Flush, tables: dict[str, pa.Table]) -> dict[str, int]:
    """Append Arrow tables to several data-plane tables at once: all of them land, or none does.

    Each table gets its own cursor, transaction and thread (DuckDB releases the
    GIL while it inserts), so the inserts overlap: one's single-threaded start and
    end run beside the other's work. On an idle 2-core machine that is about even
    with one insert after the other; when other work competes for the cores it is
    a few percent faster (more threads of ours to be given them). The transactions
    are committed only once every insert succeeded and are all rolled back
    otherwise; only a failing COMMIT itself (a disk failure, which invalidates the
    database) could split them.
    """
    check_bulk_tables(tables, "bulk_insert_many")

    def insert(cursor: duckdb.DuckDBPyConnection, table: str) -> None:
        cursor.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _vb_bulk").fetchall()
        _add_to_aggregates(cursor, table)  # each aggregate table is written by one of the transactions only

    with handle.lock, translated(f"cannot insert rows into {', '.join(tables)}", handle.path), ExitStack() as stack:
        flush()
        con = handle.connection()
        cursors = [con.cursor() for _ in tables]
        for cursor in cursors:
            stack.callback(cursor.close)  # after every transaction below has ended
        for cursor, rows in zip(cursors, tables.values(), strict=True):
            cursor.execute("SET TimeZone = 'UTC'")
            cursor.register("_vb_bulk", rows)  # the cursor's own name: it goes when the cursor closes
            stack.enter_context(transaction(cursor))  # all commit as the block ends, or all roll back
        with ThreadPoolExecutor(max_workers=len(tables), thread_name_prefix="vbgateway-bulk") as pool:
            done = [pool.submit(insert, cursor, table) for cursor, table in zip(cursors, tables, strict=True)]
        failures = [error for error in (f.exception() for f in done) if error is not None]
        if failures:
            raise failures[0]
    handle.version += 1
    return {table: rows.num_rows for table, rows in tables.items()}


def _add_to_aggregates(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Add the rows just inserted from ``_vb_bulk`` to the daily aggregates, in the same transaction."""
    if table == USAGE_EVENTS.name:
        aggregates.add_usage(con, "_vb_bulk")
    elif table == MESSAGES.name:
        aggregates.add_messages(con, "_vb_bulk")


def _copyable(name: str) -> Table:
    if name not in _COPYABLE:
        raise ValidationError(f"rows can be copied for tables among {sorted(_COPYABLE)}", details={"table": name})
    return table_named(name)


def table_rows(handle: DuckHandle, tables: Iterable[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of a few small tables, as plain tuples in column order (what ``insert_rows`` takes)."""
    return {name: handle.fetchall(f"SELECT {', '.join(_copyable(name).column_names)} FROM {name}")
            for name in tables}


def insert_rows(handle: DuckHandle, tables: Mapping[str, Sequence[Sequence[Any]]]) -> None:
    """Insert rows given in column order straight into DuckDB, all or none."""
    statements = [(_copyable(name).insert_sql(), rows) for name, rows in tables.items() if rows]
    with handle.lock, handle.transaction(), translated("cannot insert the rows", handle.path):
        con = handle.connection()
        for sql, rows in statements:
            con.executemany(sql, [list(row) for row in rows])


@contextmanager
def merging(handle: DuckHandle, flush: Flush) -> Iterator[Merge]:
    """One transaction that appends other databases' data rows (see ``Store.merging``)."""
    with handle.lock:
        flush()
        con = handle.connection()
        with temporarily(con, **merge_settings()):
            with handle.transaction():
                yield Merge(con)
            with translated("cannot checkpoint the merged rows", handle.path):
                con.execute("CHECKPOINT")


def arrow_reader(handle: DuckHandle, flush: Flush, sql: str, batch_rows: int) -> pa.RecordBatchReader:
    """A query's rows as a stream of Arrow batches (to copy them into another store)."""
    with handle.lock:
        flush()
        with translated("cannot read the rows to copy", handle.path):
            return handle.connection().sql(sql).to_arrow_reader(batch_rows)

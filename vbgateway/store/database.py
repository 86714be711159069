"""The store: the only code that writes SQL, behind a narrow interface.

Typed rows and plain models go in, plain models and tuples come out; no
DuckDB object leaks past the store, so a PostgreSQL store can later stand
beside it.

Two write paths:
- control plane (tenants, keys, agents): rare, written straight to DuckDB;
- data plane (sessions, messages, attempts, usage, idempotency): committed
  to the journal (``journal.py``), then applied to DuckDB in batches.
Every read of data-plane tables first applies what is pending, so a reader
always sees every committed row.

``Store`` puts together parts that can each be read and tested alone:
``DuckHandle`` (the connection: opening, the second cursor, lending state),
``Applier`` and ``PendingIndex`` (journal, pending index, applier thread),
``GroupCommit`` (concurrent commits sharing an fsync), ``Lender`` (the
thread that lends the file to readers), ``bulk`` and ``reads``.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from ..errors import DatabaseBusyError, DatabaseError
from . import bulk, reads
from .answers import AnswerCache
from .budget_queries import BudgetQueries
from .connection import translated
from .governance_queries import GovernanceQueries
from .group_commit import GroupCommit, not_durable
from .handle import DuckHandle
from .journal import Journal
from .lending import Lender
from .merge import Merge
from .pending import Applier
from .provider_rows import ProviderQueries
from .queries import RecordQueries
from .records import plain_record
from .tables import JournalRow

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["DEFAULT_FLUSH_ROWS", "LEND_WAIT_S", "Store"]

DEFAULT_FLUSH_ROWS = 5000
LEND_WAIT_S = 60.0  # how long either side waits for the other to hand the file over


def _close_if_open(store_ref: weakref.ref[Store]) -> None:
    """Close a store still open when the interpreter exits (a script's end, a notebook kernel shut down).

    Registered per store through ``weakref.finalize``, so it keeps no store
    alive and does nothing for a store closed before (``close`` detaches it).
    """
    store = store_ref()
    if store is not None:
        store.close()


class Store(RecordQueries, GovernanceQueries, BudgetQueries, ProviderQueries):
    """One DuckDB database (a file, ``:memory:`` or an open connection) plus its journal.

    ``commit_window_s``: the store runs on virtual time (a ``VirtualClock``'s
    loop), where concurrent commits wait this long of the loop's time to share
    one fsync; ``None``: real time, a journal thread writes each group.
    ``journal=False`` (a simulation's own databases): replies go to DuckDB in
    batches without a journal, so they are durable only once applied, and
    the file is not lent to readers. ``settings`` are DuckDB settings for
    the store's own connections (e.g. ``memory_limit``).
    """

    def __init__(self, target: str | Path | duckdb.DuckDBPyConnection = ":memory:", *, now: Any = None,
                 flush_records: int = DEFAULT_FLUSH_ROWS, read_only: bool = False,
                 wait_s: float = LEND_WAIT_S, journal: bool = True, commit_window_s: float | None = None,
                 settings: Mapping[str, bool | int | str] | None = None) -> None:
        self.read_only = read_only
        self.wait_s = wait_s
        # What the gateway keeps in memory and hands over when the store is flushed (and so also at
        # close): refused requests, keys' last use (governance/). Each is called without arguments.
        self.before_flush: list[Callable[[], None]] = []
        self.path = None if isinstance(target, duckdb.DuckDBPyConnection) or str(target) == ":memory:" else Path(target)
        self._handle = DuckHandle(self.path, wait_s=wait_s, settings=settings)
        self._lock = self._handle.lock
        self._journal = self._open_journal() if journal and not read_only else Journal(None)
        self._applier = Applier(self._handle, self._journal, flush_records=flush_records)
        self._group = GroupCommit(self._applier.write_group, self._applier.write_group_in_thread,
                                  window_s=commit_window_s, fsync=self._journal.durable)
        self._lender: Lender | None = None
        self._at_exit: weakref.finalize[[weakref.ref[Store]], Store] | None = None
        self.answers = AnswerCache(self)  # read answers kept until the next write (``answers.py``)
        self.open_count = 0
        try:
            if read_only:
                self._open_reader()
            else:
                self._open_writer(target, now, lend=journal)
        except BaseException:
            self._release_all()
            raise
        self._at_exit = weakref.finalize(self, _close_if_open, weakref.ref(self))

    def _open_writer(self, target: str | Path | duckdb.DuckDBPyConnection, now: Any, *, lend: bool) -> None:
        applied, self.open_count = self._handle.open_writer(target, now, lend=lend)
        with translated(f"cannot recover {self.path or 'the database'}", self.path):
            self._applier.recover(applied)
            self._applier.load_stored_keys()
        self._handle.open_side()
        if self._handle.lease is not None:
            self._lender = Lender(self._handle, self._applier)
            self._lender.start()

    def _open_reader(self) -> None:
        """A read-only view: the file is borrowed from a running gateway, or read directly."""
        if self.path is None or not self.path.exists():
            raise DatabaseError(f"no database at {self.path}", details={"path": str(self.path)})
        journal = Path(str(self.path) + ".journal")
        if journal.exists() and journal.stat().st_size > 0:
            # Replies a crashed gateway left in its journal belong in the snapshot; if a live
            # gateway holds them (DATABASE_BUSY), it applies them before lending the file.
            with contextlib.suppress(DatabaseBusyError):
                Store(self.path, wait_s=self.wait_s).close()
        self._handle.open_reader()

    def _open_journal(self) -> Journal:
        """Create the folder and take the journal, whose lock keeps two stores apart."""
        if self.path is None:
            return Journal(None)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return Journal(Path(str(self.path) + ".journal"))
        except DatabaseBusyError as exc:  # the journal's lock: another store holds it
            raise DatabaseBusyError(f"{self.path} is already open in another gateway; close that one first",
                                    details={"path": str(self.path)}) from exc
        except OSError as exc:
            raise DatabaseError(f"cannot use {self.path}: {exc.strerror or exc}",
                                details={"path": str(self.path)}) from exc

    def _release_all(self, *, clean: bool = False) -> None:
        """Let go of everything; ``clean`` (DuckDB holds every committed record) also removes the side files."""
        self._applier.stop()
        self._group.close()
        self._stop_lender()
        self._applier.close(clean=clean)  # from here on a commit is refused (DATABASE_ERROR)
        self._handle.close(clean=clean)
        if self._at_exit is not None:
            self._at_exit.detach()

    def _stop_lender(self) -> None:
        """Stop lending to new readers; call without holding _lock (the lender may be waiting for it)."""
        if self._lender is not None:
            self._lender.stop()

    # ----------------------------------------------------------------- lifecycle
    @property
    def schema_version(self) -> int:
        return self._handle.schema_version(read_only=self.read_only)

    @property
    def flush_records(self) -> int:
        """Committed records that make a batch for DuckDB."""
        return self._applier.flush_records

    @flush_records.setter
    def flush_records(self, value: int) -> None:
        self._applier.flush_records = value

    @property
    def data_version(self) -> int:
        """How many writes DuckDB committed since the store opened: an answer holds while this is unchanged."""
        return self._handle.version

    @property
    def pending_records(self) -> int:
        """Committed records DuckDB does not hold yet."""
        return len(self._applier.index)

    def close(self) -> None:
        """Apply everything committed, checkpoint, and let go: the file alone then holds the database.

        The journal, ``<db>.readers`` and ``<db>.handoff/`` are removed, so any
        DuckDB client can open the file. Closing again does nothing. A store
        still open when the interpreter exits is closed then (``_close_if_open``).
        If the records cannot be applied (DuckDB failing, a reader keeping
        the lent file), the journal stays and the next open applies it.
        """
        self._applier.stop()  # outside _lock: a background apply may be waiting for it
        self._stop_lender()  # likewise the lender
        with self._lock:
            if self._applier.closed:
                return
            clean = False
            try:
                if not self.read_only:
                    self.flush()
                    self._handle.checkpoint()
                clean = True
            finally:
                self._release_all(clean=clean)

    def _refuse_if_read_only(self) -> None:
        if self.read_only:
            raise DatabaseError("this is a read-only view of the database", details={"path": str(self.path)})

    # ----------------------------------------------------------------- data-plane writes
    def commit(self, rows: Sequence[JournalRow]) -> None:
        """Make one record of ``rows`` (of the journaled tables) durable now (one fsync), then queue it for DuckDB."""
        self._refuse_if_read_only()
        try:
            self._applier.append([plain_record(rows)])
        except Exception as exc:
            raise not_durable(exc)  # noqa: B904 (the cause is attached)
        self._applier.maybe_apply()

    async def commit_async(self, rows: Sequence[JournalRow]) -> None:
        """Like ``commit``, but commits of concurrent callers share one fsync (``group_commit.py``).

        Each caller returns only after its own record is durable.
        """
        if self.read_only:
            self._refuse_if_read_only()
        try:
            record = plain_record(rows)
        except Exception as exc:
            raise not_durable(exc)  # noqa: B904 (the cause is attached)
        durable = self._group.submit(record)
        if durable is not None:
            await durable

    def flush(self) -> None:
        """Apply everything committed so far to DuckDB in one transaction (after a caller's ``transaction``).

        First the ``before_flush`` hooks hand over what waits in memory, so a read sees it too.
        """
        for hook in self.before_flush:
            hook()
        with self._lock:
            self._applier.apply_pending()

    # ----------------------------------------------------------------- transactions and bulk writes
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The store operations of the block land together, or none does (one DuckDB transaction).

        Operations in the block join it; records committed meanwhile are
        journaled as ever and applied once it ends. Other threads wait.
        """
        self._refuse_if_read_only()
        with self._handle.transaction():
            yield

    def bulk_insert(self, table: str, rows: pa.Table) -> int:
        """Append an Arrow table to a data-plane table in one transaction (synthetic data, imports).

        Columns are matched by name; the journal is bypassed because the rows
        are not replies anyone was promised: they land whole or not at all.
        """
        bulk.check_bulk_tables([table], "bulk_insert")
        self._refuse_if_read_only()
        return bulk.bulk_insert(self._handle, self.flush, table, rows)

    def bulk_insert_many(self, tables: dict[str, pa.Table]) -> dict[str, int]:
        """Append Arrow tables to several data-plane tables at once: all of them land, or none does."""
        bulk.check_bulk_tables(tables, "bulk_insert_many")
        self._refuse_if_read_only()
        return bulk.bulk_insert_many(self._handle, self.flush, tables)

    def table_rows(self, tables: Iterable[str]) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of a few small tables (tenants, keys, agents), as plain tuples in column order.

        Plain data that another process can be sent and ``insert_rows`` takes.
        """
        return bulk.table_rows(self._handle, tables)

    def insert_rows(self, tables: Mapping[str, Sequence[Sequence[Any]]]) -> None:
        """Insert rows given in column order (as ``table_rows`` gives them) straight into DuckDB, all or none."""
        self._refuse_if_read_only()
        bulk.insert_rows(self._handle, tables)

    @contextmanager
    def merging(self) -> Iterator[Merge]:
        """One transaction that appends other databases' data rows to this one (a simulation's instances).

        ``Merge.add_file`` and ``Merge.add_store`` may be called from another
        thread, one call at a time, while the block runs: the block owns the
        connection meanwhile. Rows go in unordered (DuckDB then appends on
        all its threads) and without vacuum (``merge_settings``); the
        checkpoint that writes them out runs here; the connection's own
        settings come back afterwards. A failure anywhere leaves none of the
        merged rows behind.
        """
        self._refuse_if_read_only()
        with bulk.merging(self._handle, self.flush) as merge:
            yield merge

    def _arrow_reader(self, sql: str, batch_rows: int) -> pa.RecordBatchReader:
        """A query's rows as a stream of Arrow batches (``Merge.add_store`` copies another store with it)."""
        return bulk.arrow_reader(self._handle, self.flush, sql, batch_rows)

    # ----------------------------------------------------------------- reads
    def _fetchall(self, sql: str, params: list[Any] | None = None, *,
                  flush_for: str | None = None) -> list[tuple[Any, ...]]:
        """Run a query; with ``flush_for``, first apply pending rows if that session has any."""
        index = self._applier.index
        if flush_for is None or not index.has_session(flush_for):
            return self._handle.fetchall(sql, params)

        def apply_if_still_pending() -> None:
            if index.has_session(flush_for):
                self._applier.apply_pending()

        return self._handle.fetchall(sql, params, apply_if_still_pending)

    def read_rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """The package's own read queries (never a caller's SQL): every committed record counts, as in
        ``query_rows``, without parsing the statement first to check it only reads."""
        if not len(self._applier.index):
            return self._handle.fetchall(sql, params)
        return self._handle.fetchall(sql, params, self._applier.apply_pending)

    def _execute(self, statements: list[tuple[str, Sequence[Any]]]) -> None:
        """Control-plane writes, in one transaction."""
        self._refuse_if_read_only()
        self._handle.execute_all(statements, "cannot write to the database")

    def idempotency_record(self, tenant_id: str, key: str) -> tuple[str, str] | None:
        """(request_hash, response JSON) stored for a tenant's key, pending or applied."""
        pending, maybe_stored = self._applier.index.lookup(tenant_id, key)
        if pending is not None:
            return pending
        if not maybe_stored:
            return None  # certainly not in DuckDB: no 1-2 ms query for a new key
        rows = self._fetchall("SELECT request_hash, response FROM idempotency_records WHERE tenant_id = ? AND key = ?",
                              [tenant_id, key])
        if not rows:
            return None
        [(request_hash, response)] = rows
        return request_hash, response

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run one read-only query for analysis, after applying everything pending.

        Only SELECT-like statements are accepted: analysis must never be able
        to change what was billed.
        """
        return reads.to_frame(reads.read(self._handle, self.flush, sql, params,
                                         lambda relation: relation.to_arrow_table()))

    def query_rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """``query`` as plain tuples, for callers that want a few values and not a DataFrame."""
        return reads.read(self._handle, self.flush, sql, params, lambda relation: relation.fetchall())

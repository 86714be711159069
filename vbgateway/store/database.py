"""The store: the only code that writes SQL, behind a narrow interface.

Plain models and tuples go in and out; no DuckDB object leaks past this
module, so a PostgreSQL store can later stand beside it.

Two write paths:
- control plane (tenants, keys, agents): rare, written straight to DuckDB;
- data plane (sessions, messages, attempts, usage, idempotency): committed
  to the journal (``journal.py``), then applied to DuckDB in batches.
Every read of data-plane tables first applies what is pending, so a reader
always sees every committed row.

Three locks, always taken in this order, so that a commit never waits for
DuckDB (applying a batch of 5,000 replies takes a tenth of a second, which
would otherwise stall every reply in flight):
- ``_lock`` (re-entrant): the DuckDB connection, applying batches, lending;
- ``_journal_lock``: sequence numbers, appends and compaction of the journal;
- ``_state``: the pending records and their indexes, held for microseconds.
On a real event loop a full batch is applied by an applier thread while the
journal thread goes on committing; the batch stays indexed as pending until
its DuckDB transaction commits, so a read never misses a row in between.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb

from ..errors import DatabaseBusyError, DatabaseError, GatewayError, InternalError, ValidationError
from .batch import apply_batch, lower_thread_priority
from .connection import connect, database_error, transaction, translated
from .handoff import ReaderLease, WriterLease
from .keyfilter import KEY_HASH_SQL, KeyFilter
from .journal import Journal, last_committed_seq
from .merge import Merge, merge_settings
from .queries import RecordQueries
from .records import IdempotencyEntry, PlainRecord, make_plain, payload_of, plain_record
from .schema import MIGRATIONS, migrate, schema_version
from .settings import temporarily
from .tables import BULK_TABLES, CONTROL_TABLES, JournalRow, table_named

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["Store"]


_READ_ONLY = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
T = TypeVar("T")

_log = logging.getLogger("vbgateway.store")

# A committed record not yet in DuckDB: (seq, its JSON, the sessions it touches, its idempotency
# entries). The JSON is what DuckDB applies; the record itself is let go (fewer objects for the GC).
_Pending = tuple[int, str, tuple[str, ...], tuple[IdempotencyEntry, ...]]
_BULK = {t.name for t in BULK_TABLES}
_COPYABLE = {t.name for t in (*CONTROL_TABLES, *BULK_TABLES)}

DEFAULT_FLUSH_ROWS = 5000
LEND_WAIT_S = 60.0  # how long either side waits for the other to hand the file over
WATCH_S = 0.05  # how often a writer looks for readers asking for the file


def _close_if_open(store_ref: weakref.ref[Store]) -> None:
    """Close a store still open when the interpreter exits (a script's end, a notebook kernel shut down).

    Registered per store through ``weakref.finalize``, so it keeps no store
    alive and does nothing for a store closed before (``close`` detaches it).
    """
    store = store_ref()
    if store is not None:
        store.close()


def _not_durable(cause: BaseException) -> GatewayError:
    """What a caller whose record could not be committed is told (the cause stays attached).

    The store's own database errors (a closed or unwritable store) already say
    what is wrong and pass through; anything else becomes INTERNAL_ERROR.
    """
    if isinstance(cause, DatabaseError):
        return cause
    error = InternalError("could not make the reply durable")
    error.__cause__ = cause
    return error


class Store(RecordQueries):
    """One DuckDB database (a file, ``:memory:`` or an open connection) plus its journal.

    ``journal=False`` (a simulation's own databases): replies go to DuckDB
    in batches without a journal, so they are durable only once applied, and
    the file is not lent to readers. ``settings`` are DuckDB settings for the
    store's own connections (e.g. ``memory_limit``).
    """

    def __init__(self, target: str | Path | duckdb.DuckDBPyConnection = ":memory:", *, now: Any = None,
                 flush_records: int = DEFAULT_FLUSH_ROWS, read_only: bool = False,
                 wait_s: float = LEND_WAIT_S, journal: bool = True,
                 settings: Mapping[str, bool | int | str] | None = None) -> None:
        self._lock = threading.RLock()
        self._journal_lock = threading.Lock()
        self._state = threading.Lock()
        self.flush_records = flush_records
        self.read_only = read_only
        self.wait_s = wait_s
        self._pending: list[_Pending] = []  # committed, not yet in DuckDB, in sequence order
        self._applying: list[_Pending] = []  # taken from _pending by the batch being applied
        self._pending_idempotency: dict[tuple[str, str], tuple[str, str]] = {}
        self._stored_keys: KeyFilter | None = None  # a writer's filter of the keys DuckDB holds
        self._pending_sessions: set[str] = set()  # sessions with rows not yet in DuckDB
        self._queue: list[tuple[PlainRecord, asyncio.Future[None]]] = []
        self._drain_scheduled = False
        self._writer_pool: ThreadPoolExecutor | None = None
        self._apply_pool: ThreadPoolExecutor | None = None
        self._apply_scheduled = False
        self._closing = False
        self._in_transaction = False  # a caller's transaction() is open: batches wait until it ends
        self._journaled = journal
        self._settings = dict(settings or {})
        self._owns_connection = not isinstance(target, duckdb.DuckDBPyConnection)
        self.path = None if isinstance(target, duckdb.DuckDBPyConnection) or str(target) == ":memory:" else Path(target)
        self._journal = Journal(None)
        self._lease: WriterLease | ReaderLease | None = None
        self._lent = False
        self._con: duckdb.DuckDBPyConnection | None = None
        self._side: duckdb.DuckDBPyConnection | None = None  # a second cursor, for reads while _lock is busy
        self._side_lock = threading.Lock()
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._seq, self.open_count = 0, 0
        self._closed = False
        self._at_exit: weakref.finalize | None = None
        try:
            if read_only:
                self._open_reader()
            else:
                self._open_writer(target, now)
        except BaseException:
            self._release_all()
            raise
        self._at_exit = weakref.finalize(self, _close_if_open, weakref.ref(self))

    def _open_writer(self, target: str | Path | duckdb.DuckDBPyConnection, now: Any) -> None:
        if self._journaled:
            self._journal = self._open_journal()
            if self.path is not None:
                self._lease = WriterLease(self.path, self.wait_s)
        self._con = target if isinstance(target, duckdb.DuckDBPyConnection) else self._connect()
        with translated(f"cannot prepare {self.path or 'the database'}", self.path):
            self._con.execute("SET TimeZone = 'UTC'")  # also for a connection we were handed
            migrate(self._con, now)
            self._con.execute("UPDATE journal_state SET open_count = open_count + 1 WHERE id = 1").fetchall()
            applied, self.open_count = self._journal_state()
        self._seq = max(applied, self._journal.last_seq())
        self._recover(applied)
        with translated("cannot read the idempotency keys", self.path):
            self._load_stored_keys()
            self._open_side()
        if isinstance(self._lease, WriterLease):
            self._watcher = threading.Thread(target=self._watch_for_readers, name="vbgateway-lender", daemon=True)
            self._watcher.start()

    def _open_reader(self) -> None:
        """A read-only view: the file is borrowed from a running gateway, or read directly."""
        if self.path is None or not self.path.exists():
            raise DatabaseError(f"no database at {self.path}", details={"path": str(self.path)})
        journal = Path(str(self.path) + ".journal")
        if journal.exists() and journal.stat().st_size > 0:
            try:  # replies a crashed gateway left in its journal belong in the snapshot
                Store(self.path, wait_s=self.wait_s).close()
            except DatabaseBusyError:
                pass  # a live gateway holds them; it applies them before lending the file
        needed = last_committed_seq(journal) if journal.exists() else 0
        lease = self._lease = ReaderLease(self.path, self.wait_s)
        while True:  # accept the file once it holds everything committed before we asked
            self._con = self._connect(read_only=True)
            try:
                applied = self._con.execute("SELECT applied_seq FROM journal_state WHERE id = 1").fetchone()
            except duckdb.Error as exc:
                raise DatabaseError("the database is not a vbgateway database, or not current; open it once "
                                    "with a gateway to migrate it", details={"path": str(self.path)}) from exc
            if applied is not None and applied[0] >= needed:
                break
            self._con.close()
            self._con = None
            lease.retry()
        try:
            version = self._con.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]  # type: ignore[index]
        except duckdb.Error:
            version = None
        if version != MIGRATIONS[-1].version:
            raise DatabaseError("the database schema is not current; open it once with a gateway to migrate it",
                                details={"path": str(self.path)})

    def _release_all(self, *, clean: bool = False) -> None:
        """Let go of everything; ``clean`` (DuckDB holds every committed record) also removes the side files."""
        self._stop_applier()
        if self._writer_pool is not None:
            self._writer_pool.shutdown(wait=True)
            self._writer_pool = None
        self._stop_watcher()
        self._close_side()
        with self._journal_lock:  # a commit racing the close is refused, never appended to a removed journal
            self._closed = True
            self._journal.close(delete=clean and not self._pending and not self._applying)
        if self._owns_connection and self._con is not None:
            self._con.close()
        self._con = None
        if isinstance(self._lease, WriterLease):
            self._lease.close(remove_files=clean)
        elif self._lease is not None:
            self._lease.close()
        self._lease = None
        if self._at_exit is not None:
            self._at_exit.detach()

    def _stop_watcher(self) -> None:
        """Stop lending to new readers; call without holding _lock (the watcher may be waiting for it)."""
        self._watch_stop.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join()

    # ----------------------------------------------------------------- lending to readers
    def _watch_for_readers(self) -> None:
        while not self._watch_stop.wait(WATCH_S):
            lease = self._lease
            if not isinstance(lease, WriterLease) or not lease.requested():
                continue
            with self._lock:
                if self._con is not None and not self._lent:
                    self._lend(lease)
                elif self._lent and self.pending_records and lease.try_acquire():
                    # committed since we lent it: take it back, apply, lend again
                    self._con = self._connect()
                    self._lent = False
                    self._lend(lease)

    def _lend(self, lease: WriterLease) -> None:
        """Apply what is pending, close DuckDB and let readers in."""
        self.flush()
        assert self._con is not None
        self._close_side()
        self._con.close()
        self._con = None
        self._lent = True
        lease.release()

    def _connection(self) -> duckdb.DuckDBPyConnection:
        """The open connection, taken back from readers first if it was lent."""
        if self._lent:
            assert isinstance(self._lease, WriterLease)
            self._lease.acquire(self.wait_s)
            self._con = self._connect()
            self._lent = False
            self._open_side()
        if self._con is None:
            raise DatabaseError("the database is closed")
        return self._con

    def _open_side(self) -> None:
        """A second cursor on the writer's database (caller holds _lock): see _fetchall."""
        assert self._con is not None
        with translated("cannot open a second cursor", self.path):
            side = self._con.cursor()
            side.execute("SET TimeZone = 'UTC'")
        with self._side_lock:
            self._side = side

    def _close_side(self) -> None:
        with self._side_lock:  # waits for a read in progress
            side, self._side = self._side, None
        if side is not None:
            side.close()

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
            raise DatabaseError(f"cannot use {self.path}: {exc.strerror or exc}", details={"path": str(self.path)}) from exc

    def _connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        return connect(self.path, read_only=read_only, settings=self._settings)

    # ----------------------------------------------------------------- lifecycle
    @property
    def schema_version(self) -> int:
        with self._lock, translated("cannot read the schema version", self.path):
            if self.read_only:
                return int(self._connection().execute("SELECT max(version) FROM schema_migrations").fetchone()[0])  # type: ignore[index]
            return schema_version(self._connection())

    def close(self) -> None:
        """Apply everything committed, checkpoint, and let go: the file alone then holds the database.

        The journal, ``<db>.readers`` and ``<db>.handoff/`` are removed, so any
        DuckDB client can open the file. Closing again does nothing. A store
        still open when the interpreter exits is closed then (``_close_if_open``).
        If the records cannot be applied (DuckDB failing, a reader keeping
        the lent file), the journal stays and the next open applies it.
        """
        self._stop_applier()  # outside _lock: a background apply may be waiting for it
        self._stop_watcher()
        with self._lock:
            if self._closed:
                return
            clean = False
            try:
                if not self.read_only:
                    self.flush()
                    self._checkpoint()
                clean = True
            finally:
                self._release_all(clean=clean)

    def _checkpoint(self) -> None:
        """Write DuckDB's WAL into the file (caller holds _lock), so a read-only client needs nothing beside it."""
        if self._con is None:  # lent: DuckDB checkpointed as it closed, and nothing was committed since
            return
        self._close_side()
        try:
            self._con.execute("CHECKPOINT")
        except duckdb.Error:  # the WAL holds it all the same; DuckDB checkpoints it as it closes
            _log.warning("checkpoint at close failed", exc_info=True)

    def _journal_state(self) -> tuple[int, int]:
        """(last journal sequence applied, how many times the database was opened)."""
        row = self._con.execute("SELECT applied_seq, open_count FROM journal_state WHERE id = 1").fetchone()
        if row is None:
            return 0, 0
        applied, opened = row
        return int(applied), int(opened)

    def _recover(self, applied: int) -> None:
        """Apply journal lines a crash left behind, exactly once."""
        leftovers = [(seq, rec) for seq, rec in self._journal.replay() if seq > applied]
        if leftovers:
            self._write_batch([payload_of(make_plain(rec)) for _, rec in leftovers], leftovers[-1][0])
        self._journal.truncate()

    # ----------------------------------------------------------------- data-plane writes
    def commit(self, rows: Sequence[JournalRow]) -> None:
        """Make one record of ``rows`` (of the journaled tables) durable now (one fsync), then queue it for DuckDB."""
        self._refuse_if_read_only()
        try:
            self._append([plain_record(rows)])
        except Exception as exc:
            raise _not_durable(exc)  # noqa: B904 (the cause is attached)
        self._maybe_flush()

    async def commit_async(self, rows: Sequence[JournalRow]) -> None:
        """Like ``commit``, but commits of concurrent callers share one fsync.

        Each caller returns only after its own record is durable. On a
        virtual-time loop the group is written on the loop itself (so a run
        stays deterministic); on a real loop it is written by a journal
        thread, so the loop keeps serving while the disk syncs, and whatever
        arrives meanwhile forms the next group. A store without a journal on
        virtual time (a simulation's own database) has no fsync to share and
        takes the record at once.
        """
        self._refuse_if_read_only()
        loop = asyncio.get_running_loop()
        group_commit = getattr(loop, "group_commit", None)
        try:
            record = plain_record(rows)
        except Exception as exc:
            raise _not_durable(exc)  # noqa: B904 (the cause is attached)
        if group_commit is not None and not self._journal.durable:
            # Virtual time and no journal (a simulation's own database): there is no fsync to
            # share, so the record is taken at once, without a window, a timer or a future
            # (a third of a simulated reply's event-loop turns).
            try:
                self._write_group([record])
            except Exception as exc:
                raise _not_durable(exc)  # noqa: B904 (the cause is attached)
            return
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append((record, future))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            if group_commit is not None:  # virtual time: a short window of virtual time
                group_commit(self._drain)
            else:
                loop.call_soon(self._drain_in_thread, loop)
        await future

    def _take_queue(self) -> list[tuple[PlainRecord, asyncio.Future[None]]]:
        queue, self._queue = self._queue, []
        return queue

    def _drain(self) -> None:
        self._drain_scheduled = False
        queue = self._take_queue()
        if queue:
            try:
                self._write_group([record for record, _ in queue])
            except Exception as exc:
                self._settle(queue, exc)
            else:
                self._settle(queue, None)

    def _drain_in_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        queue = self._take_queue()
        if not queue:
            self._drain_scheduled = False
            return
        if self._writer_pool is None:
            self._writer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vbgateway-journal")
        done = loop.run_in_executor(self._writer_pool, self._write_group_in_thread, [record for record, _ in queue])

        def written(result: asyncio.Future[None]) -> None:
            self._settle(queue, result.exception())
            if self._queue:  # arrived while we were writing: the next group
                loop.call_soon(self._drain_in_thread, loop)
            else:
                self._drain_scheduled = False

        done.add_done_callback(written)

    def _write_group(self, records: list[PlainRecord]) -> None:
        """Append and fsync a group of records, then apply a full batch here and now."""
        self._append(records)
        self._maybe_flush()

    def _write_group_in_thread(self, records: list[PlainRecord]) -> None:
        """The journal thread's group: a full batch goes to the applier thread, never in the way."""
        self._append(records)
        if self.pending_records >= self.flush_records:
            self._schedule_apply()

    def _append(self, records: list[PlainRecord]) -> None:
        """Number, append and fsync ``records`` (all or nothing), then index them as pending."""
        with self._journal_lock:
            if self._closed:
                raise DatabaseError("the database is closed")
            entries = [(self._seq + i + 1, plain.record) for i, plain in enumerate(records)]
            payloads = self._journal.append(entries) or [payload_of(record) for _, record in entries]
            self._seq += len(entries)
            pending = [(seq, payload, plain.sessions, plain.idempotency)
                       for (seq, _), payload, plain in zip(entries, payloads, records)]
            with self._state:  # still under the journal lock: _pending stays in sequence order
                self._pending.extend(pending)
                for entry in pending:
                    self._index(entry)

    @staticmethod
    def _settle(queue: list[tuple[PlainRecord, asyncio.Future[None]]], failure: BaseException | None) -> None:
        if failure is not None:
            error = _not_durable(failure)
        for _, future in queue:
            if not future.done():
                future.set_exception(error) if failure is not None else future.set_result(None)

    def _index(self, entry: _Pending) -> None:
        """Note which sessions and idempotency keys have rows not yet in DuckDB (caller holds _state)."""
        _, _, sessions, idempotency = entry
        self._pending_sessions.update(sessions)
        self._pending_idempotency.update(idempotency)

    def _maybe_flush(self) -> None:
        """Apply pending records once there are enough of them, in the calling thread.

        A failure here must not fail the commit that triggered it: its record
        is already durable in the journal, and the next flush (or the next
        open) applies it. While the file is lent to a reader, replies only go
        to the journal; while another thread holds DuckDB, the flush is left
        to a later commit rather than waited for.
        """
        if self.pending_records < self.flush_records or self._lent or not self._lock.acquire(blocking=False):
            return
        try:
            if not self._lent:
                self.flush()
        except Exception:
            _log.exception("applying %d journal records to DuckDB failed; will retry", self.pending_records)
        finally:
            self._lock.release()

    def _schedule_apply(self) -> None:
        """Have the applier thread apply what is pending (once at a time)."""
        with self._state:
            if self._apply_scheduled or self._closing or self._lent:
                return
            self._apply_scheduled = True
            if self._apply_pool is None:
                self._apply_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vbgateway-apply",
                                                      initializer=lower_thread_priority)
            self._apply_pool.submit(self._apply_in_background)

    def _apply_in_background(self) -> None:
        """Apply what is pending on one DuckDB thread, at the applier thread's low priority.

        DuckDB would otherwise take both cores for a few hundred milliseconds,
        and every reply in flight meanwhile took twice as long (measured with
        bench_api: median latency during an apply 1.5-1.9x that outside it;
        like this 1.0-1.1x). Reads that need DuckDB meanwhile go to the second
        cursor (``_fetchall``) rather than wait for the slower batch.
        """
        try:
            with self._lock:
                if not self._lent and self._con is not None:
                    with temporarily(self._con, threads=1):  # DuckDB on this thread alone, at its priority
                        self._apply_pending()
        except Exception:
            _log.exception("applying %d journal records to DuckDB failed; will retry", self.pending_records)
        finally:
            with self._state:
                self._apply_scheduled = False

    def _stop_applier(self) -> None:
        """No more background applies; wait for the one running (call without holding _lock)."""
        with self._state:
            self._closing = True
            pool, self._apply_pool = self._apply_pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _refuse_if_read_only(self) -> None:
        if self.read_only:
            raise DatabaseError("this is a read-only view of the database", details={"path": str(self.path)})

    def flush(self) -> None:
        """Apply everything committed so far to DuckDB in one transaction (after a caller's ``transaction``)."""
        with self._lock:
            self._apply_pending()

    def _apply_pending(self) -> None:
        """Apply the pending records (caller holds _lock), then drop their journal lines.

        Commits go on meanwhile: they append to the journal and to a fresh
        pending list. The batch stays in the indexes until DuckDB has it, and
        goes back in front of the pending list if the transaction fails.
        """
        if self._in_transaction:  # the caller's transaction on this thread: applied once it ends
            return
        with self._state:
            batch, self._pending = self._pending, []
            self._applying = batch
        if not batch:
            return
        up_to = batch[-1][0]
        try:
            self._write_batch([payload for _, payload, _, _ in batch], up_to)
        except BaseException:
            with self._state:
                self._pending[:0] = batch
                self._applying = []
            raise
        with self._state:
            self._applying = []
            if self._stored_keys is not None:  # the keys move from the pending index to the filter at once
                for _, _, _, idempotency in batch:
                    for (tenant_id, key), _ in idempotency:
                        self._stored_keys.add(tenant_id, key)
            self._pending_sessions = set()
            self._pending_idempotency = {}
            for entry in self._pending:
                self._index(entry)
        try:
            self._journal.discard_through(up_to, self._journal_lock)
        except Exception:  # the batch is in DuckDB all the same; recovery skips lines up to applied_seq
            _log.warning("could not drop applied lines from the journal; will retry", exc_info=True)

    def _write_batch(self, payloads: list[str], up_to_seq: int) -> None:
        """One DuckDB transaction: the records' rows (given as their JSON), and ``applied_seq`` that says so."""
        con = self._connection()
        try:
            with transaction(con):
                apply_batch(con, payloads)
                con.execute("UPDATE journal_state SET applied_seq = ? WHERE id = 1", [up_to_seq]).fetchall()
        except duckdb.Error as exc:
            raise database_error(exc, f"cannot apply {len(payloads)} journal records", self.path) from exc

    # ----------------------------------------------------------------- transactions and bulk writes
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The store operations of the block land together, or none does (one DuckDB transaction).

        Operations in the block join it; records committed meanwhile are
        journaled as ever and applied once it ends. Other threads wait.
        """
        self._refuse_if_read_only()
        with self._lock:
            if self._in_transaction:
                yield
                return
            con = self._connection()
            self._in_transaction = True
            try:
                with translated("the transaction failed", self.path), transaction(con):
                    yield
            finally:
                self._in_transaction = False

    def bulk_insert(self, table: str, rows: pa.Table) -> int:
        """Append an Arrow table to a data-plane table in one transaction (synthetic data, imports).

        Columns are matched by name; the journal is bypassed because the rows
        are not replies anyone was promised: they land whole or not at all.
        """
        if table not in _BULK:
            raise ValidationError(f"bulk_insert takes one of {sorted(_BULK)}", details={"table": table})
        self._refuse_if_read_only()
        with self._lock:
            self.flush()
            con = self._connection()
            con.register("_vb_bulk", rows)  # outside the transaction: a failed one refuses to unregister it
            try:
                with self.transaction(), translated(f"cannot insert {rows.num_rows} rows into {table}", self.path):
                    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _vb_bulk").fetchall()
            finally:
                con.unregister("_vb_bulk")
        return rows.num_rows

    def bulk_insert_many(self, tables: dict[str, pa.Table]) -> dict[str, int]:
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
        if not tables or not set(tables) <= _BULK:
            raise ValidationError(f"bulk_insert_many takes tables among {sorted(_BULK)}",
                                  details={"tables": sorted(tables)})
        self._refuse_if_read_only()

        def insert(cursor: duckdb.DuckDBPyConnection, table: str) -> None:
            cursor.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _vb_bulk").fetchall()

        with self._lock, translated(f"cannot insert rows into {', '.join(tables)}", self.path), ExitStack() as stack:
            self.flush()
            con = self._connection()
            cursors = [con.cursor() for _ in tables]
            for cursor in cursors:
                stack.callback(cursor.close)  # after every transaction below has ended
            for cursor, rows in zip(cursors, tables.values()):
                cursor.execute("SET TimeZone = 'UTC'")
                cursor.register("_vb_bulk", rows)  # the cursor's own name: it goes when the cursor closes
                stack.enter_context(transaction(cursor))  # all commit as the block ends, or all roll back
            with ThreadPoolExecutor(max_workers=len(tables), thread_name_prefix="vbgateway-bulk") as pool:
                done = [pool.submit(insert, cursor, table) for cursor, table in zip(cursors, tables)]
            failures = [error for error in (f.exception() for f in done) if error is not None]
            if failures:
                raise failures[0]
        return {table: rows.num_rows for table, rows in tables.items()}

    def table_rows(self, tables: Iterable[str]) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of a few small tables (tenants, keys, agents), as plain tuples in column order.

        Plain data that another process can be sent and ``insert_rows`` takes.
        """
        out = {}
        for name in tables:
            table = self._copyable(name)
            out[name] = self._fetchall(f"SELECT {', '.join(table.column_names)} FROM {name}")
        return out

    def insert_rows(self, tables: Mapping[str, Sequence[Sequence[Any]]]) -> None:
        """Insert rows given in column order (as ``table_rows`` gives them) straight into DuckDB, all or none."""
        self._refuse_if_read_only()
        statements = [(self._copyable(name).insert_sql(), rows) for name, rows in tables.items() if rows]
        with self._lock, self.transaction(), translated("cannot insert the rows", self.path):
            con = self._connection()
            for sql, rows in statements:
                con.executemany(sql, [list(row) for row in rows])

    @staticmethod
    def _copyable(name: str) -> Any:
        if name not in _COPYABLE:
            raise ValidationError(f"rows can be copied for tables among {sorted(_COPYABLE)}", details={"table": name})
        return table_named(name)

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
        with self._lock:
            self.flush()
            con = self._connection()
            with temporarily(con, **merge_settings()):
                with self.transaction():
                    yield Merge(con)
                with translated("cannot checkpoint the merged rows", self.path):
                    con.execute("CHECKPOINT")

    def _arrow_reader(self, sql: str, batch_rows: int) -> pa.RecordBatchReader:
        """A query's rows as a stream of Arrow batches (to copy them into another store)."""
        with self._lock:
            self.flush()
            with translated("cannot read the rows to copy", self.path):
                return self._connection().sql(sql).to_arrow_reader(batch_rows)

    @property
    def pending_records(self) -> int:
        """Committed records DuckDB does not hold yet."""
        return len(self._pending) + len(self._applying)

    # ----------------------------------------------------------------- control plane
    def _fetchall(self, sql: str, params: list[Any] | None = None, *,
                  flush_for: str | None = None) -> list[tuple[Any, ...]]:
        """Run a query; with ``flush_for``, first apply pending rows if that session has any.

        While another thread holds DuckDB (a batch being applied, for a while),
        a query that needs no pending rows does not wait for it: it reads the
        committed state through the second cursor. Its answer is the same,
        since a batch leaves the pending index only once DuckDB committed it.
        """
        try:
            if not (flush_for is not None and flush_for in self._pending_sessions):
                if self._lock.acquire(blocking=False):
                    self._lock.release()  # free: the ordinary path below takes it again (cheap, re-entrant)
                else:
                    with self._side_lock:
                        if self._side is not None:
                            return self._side.execute(sql, params or []).fetchall()
            with self._lock:
                if flush_for is not None and flush_for in self._pending_sessions:
                    self._apply_pending()
                return self._connection().execute(sql, params or []).fetchall()
        except duckdb.Error as exc:
            raise database_error(exc, "cannot read the database", self.path) from exc

    def _execute(self, statements: list[tuple[str, Sequence[Any]]]) -> None:
        """Control-plane writes, in one transaction."""
        self._refuse_if_read_only()
        with self._lock, self.transaction(), translated("cannot write to the database", self.path):
            con = self._connection()
            for sql, params in statements:
                con.execute(sql, params).fetchall()

    def _load_stored_keys(self) -> None:
        """Hash every stored key when the writer opens; from then on each applied batch adds its own.

        Loaded before any commit can start a batch, so every key in DuckDB is
        in the filter or still in the pending index (``_apply_pending``).
        """
        cursor = self._connection().cursor()
        try:
            column = cursor.sql(f"SELECT {KEY_HASH_SQL} AS h FROM idempotency_records").fetchnumpy()
        finally:
            cursor.close()
        self._stored_keys = KeyFilter(column["h"])

    def idempotency_record(self, tenant_id: str, key: str) -> tuple[str, str] | None:
        """(request_hash, response JSON) stored for a tenant's key, pending or applied.

        A batch leaves the pending index only after DuckDB committed it, so a
        key missing from the index is either in DuckDB or nowhere.
        """
        with self._state:
            pending = self._pending_idempotency.get((tenant_id, key))
            stored = self._stored_keys
        if pending is not None:
            return pending
        if stored is not None:
            with self._state:
                if not stored.might_contain(tenant_id, key):
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
        import pandas as pd  # loaded on first use: a gateway that only serves replies never needs them
        import pyarrow as pa

        def exact_decimals(arrow_type: pa.DataType) -> pd.ArrowDtype | None:
            return pd.ArrowDtype(arrow_type) if pa.types.is_decimal(arrow_type) else None

        table = self._read(sql, params, lambda relation: relation.to_arrow_table())
        # DECIMAL stays exact (Arrow-backed); everything else gets ordinary pandas dtypes.
        return table.to_pandas(types_mapper=exact_decimals)

    def query_rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """``query`` as plain tuples, for callers that want a few values and not a DataFrame."""
        return self._read(sql, params, lambda relation: relation.fetchall())

    def _read(self, sql: str, params: list[Any] | None, fetch: Callable[[duckdb.DuckDBPyRelation], T]) -> T:
        """One read-only statement, run on its own cursor after everything pending was applied."""
        if not isinstance(sql, str):
            raise ValidationError("a query is a string")
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as exc:
            raise ValidationError(f"query failed: {exc}") from exc
        if len(statements) != 1 or statements[0].type not in _READ_ONLY:
            raise ValidationError("gw.sql runs exactly one read-only statement (SELECT, EXPLAIN)")
        with self._lock:
            self.flush()
            with translated("cannot read the database", self.path):
                cursor = self._connection().cursor()
            try:
                return fetch(cursor.sql(sql, params=params or None))
            except duckdb.Error as exc:
                raise ValidationError(f"query failed: {exc}") from exc
            finally:
                cursor.close()

"""The DuckDB connection a store holds: opened and migrated, lent to readers, taken back.

``lock`` (re-entrant) guards the connection: every statement on it, applying
a batch, lending it. While another thread holds it (a batch being applied
takes a tenth of a second), a read that needs no pending rows goes to a
second cursor (``fetchall``) instead of waiting. When the file is lent to
readers in other processes (``lending.py``) there is no connection until
``connection()`` takes the file back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from ..errors import DatabaseError
from .batch import apply_batch
from .connection import connect, database_error, transaction, translated
from .handoff import ReaderLease, WriterLease
from .journal import last_committed_seq
from .schema import MIGRATIONS, migrate, schema_version

__all__ = ["DuckHandle"]

_log = logging.getLogger("vbgateway.store")


class DuckHandle:
    """One database's DuckDB connection (a file, ``:memory:`` or the caller's), and its lease on the file."""

    def __init__(self, path: Path | None, *, wait_s: float, settings: Mapping[str, bool | int | str] | None = None
                 ) -> None:
        self.path = path
        self.wait_s = wait_s
        self.lock = threading.RLock()
        self.con: duckdb.DuckDBPyConnection | None = None
        self.lease: WriterLease | ReaderLease | None = None
        self.lent = False  # closed for readers in other processes; ``connection()`` takes it back
        self.in_transaction = False  # a caller's transaction is open: batches wait until it ends
        self._settings = dict(settings or {})
        self._owns_connection = True
        self._side: duckdb.DuckDBPyConnection | None = None  # a second cursor, for reads while ``lock`` is busy
        self._side_lock = threading.Lock()
        self.version = 0  # counts committed writes: an answer computed at one version holds until the next

    # ----------------------------------------------------------------- opening
    def open_writer(self, target: str | Path | duckdb.DuckDBPyConnection, now: Any, *, lend: bool) -> tuple[int, int]:
        """Open (or adopt the caller's connection), migrate and count the open: (applied_seq, open_count).

        ``lend``: hold the file under a lease that readers may ask for.
        """
        if lend and self.path is not None:
            self.lease = WriterLease(self.path, self.wait_s)
        if isinstance(target, duckdb.DuckDBPyConnection):
            self._owns_connection = False
            self.con = target
        else:
            self.con = self.connect()
        with translated(f"cannot prepare {self.path or 'the database'}", self.path):
            self.con.execute("SET TimeZone = 'UTC'")  # also for a connection we were handed
            migrate(self.con, now)
            self.con.execute("UPDATE journal_state SET open_count = open_count + 1 WHERE id = 1").fetchall()
            row = self.con.execute("SELECT applied_seq, open_count FROM journal_state WHERE id = 1").fetchone()
        applied, opened = row if row is not None else (0, 0)
        return int(applied), int(opened)

    def open_reader(self) -> None:
        """Borrow the file from the gateway holding it (or read it directly), once it holds every reply
        committed before we asked."""
        assert self.path is not None
        journal = Path(str(self.path) + ".journal")
        needed = last_committed_seq(journal) if journal.exists() else 0
        lease = self.lease = ReaderLease(self.path, self.wait_s)
        while True:
            self.con = self.connect(read_only=True)
            try:
                applied = self.con.execute("SELECT applied_seq FROM journal_state WHERE id = 1").fetchone()
            except duckdb.Error as exc:
                raise DatabaseError("the database is not a vbgateway database, or not current; open it once "
                                    "with a gateway to migrate it", details={"path": str(self.path)}) from exc
            if applied is not None and applied[0] >= needed:
                break
            self.con.close()
            self.con = None
            lease.retry()
        try:
            version = self.con.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]  # type: ignore[index]
        except duckdb.Error:
            version = None
        if version != MIGRATIONS[-1].version:
            raise DatabaseError("the database schema is not current; open it once with a gateway to migrate it",
                                details={"path": str(self.path)})

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        return connect(self.path, read_only=read_only, settings=self._settings)

    @property
    def is_open(self) -> bool:
        return self.con is not None or self.lent

    def connection(self) -> duckdb.DuckDBPyConnection:
        """The open connection, taken back from readers first if it was lent (caller holds ``lock``)."""
        if self.lent:
            assert isinstance(self.lease, WriterLease)
            self.lease.acquire(self.wait_s)
            self.con = self.connect()
            self.lent = False
            self.open_side()
        if self.con is None:
            raise DatabaseError("the database is closed")
        return self.con

    def schema_version(self, *, read_only: bool) -> int:
        with self.lock, translated("cannot read the schema version", self.path):
            if read_only:
                return int(self.connection().execute("SELECT max(version) FROM schema_migrations").fetchone()[0])  # type: ignore[index]
            return schema_version(self.connection())

    # ----------------------------------------------------------------- lending
    def lend(self) -> None:
        """Close DuckDB and let readers in (caller holds ``lock`` and has applied everything pending)."""
        assert self.con is not None and isinstance(self.lease, WriterLease)
        self.close_side()
        self.con.close()
        self.con = None
        self.lent = True
        self.lease.release()

    def take_back_if_free(self) -> bool:
        """Reopen the lent file if no reader holds it now (caller holds ``lock``)."""
        assert isinstance(self.lease, WriterLease)
        if not self.lease.try_acquire():
            return False
        self.con = self.connect()
        self.lent = False
        return True

    # ----------------------------------------------------------------- the second cursor
    def open_side(self) -> None:
        """A second cursor on the writer's database (caller holds ``lock``): see ``fetchall``."""
        assert self.con is not None
        with translated("cannot open a second cursor", self.path):
            side = self.con.cursor()
            side.execute("SET TimeZone = 'UTC'")
        with self._side_lock:
            self._side = side

    def close_side(self) -> None:
        with self._side_lock:  # waits for a read in progress
            side, self._side = self._side, None
        if side is not None:
            side.close()

    def fetchall(self, sql: str, params: list[Any] | None = None,
                 first: Callable[[], None] | None = None) -> list[tuple[Any, ...]]:
        """Run a query; ``first`` (applying pending rows the query needs) runs before it, under ``lock``.

        Without ``first``, while another thread holds DuckDB (a batch being
        applied, for a while), the query does not wait: it reads the
        committed state through the second cursor. Its answer is the same,
        since a batch leaves the pending index only once DuckDB committed it.
        """
        try:
            if first is None:
                if self.lock.acquire(blocking=False):
                    self.lock.release()  # free: the ordinary path below takes it again (cheap, re-entrant)
                else:
                    with self._side_lock:
                        if self._side is not None:
                            return self._side.execute(sql, params or []).fetchall()
            with self.lock:
                if first is not None:
                    first()
                return self.connection().execute(sql, params or []).fetchall()
        except duckdb.Error as exc:
            raise database_error(exc, "cannot read the database", self.path) from exc

    # ----------------------------------------------------------------- writing
    def write_batch(self, payloads: list[str], up_to_seq: int) -> None:
        """One DuckDB transaction: the records' rows (given as their JSON), and ``applied_seq`` that says so."""
        con = self.connection()
        try:
            with transaction(con):
                apply_batch(con, payloads)
                con.execute("UPDATE journal_state SET applied_seq = ? WHERE id = 1", [up_to_seq]).fetchall()
            self.version += 1
        except duckdb.Error as exc:
            raise database_error(exc, f"cannot apply {len(payloads)} journal records", self.path,
                                 callers_rows=False) from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One DuckDB transaction for the block; a block inside another joins it."""
        with self.lock:
            if self.in_transaction:
                yield
                return
            con = self.connection()
            self.in_transaction = True
            try:
                with translated("the transaction failed", self.path), transaction(con):
                    yield
            finally:
                self.in_transaction = False
                self.version += 1  # committed or not: a cached answer is recomputed either way

    def execute_all(self, statements: list[tuple[str, Any]], doing: str) -> None:
        """Several statements in one transaction."""
        with self.lock, self.transaction(), translated(doing, self.path):
            con = self.connection()
            for sql, params in statements:
                con.execute(sql, params).fetchall()

    # ----------------------------------------------------------------- closing
    def checkpoint(self) -> None:
        """Write DuckDB's WAL into the file (caller holds ``lock``), so a read-only client needs nothing beside it."""
        if self.con is None:  # lent: DuckDB checkpointed as it closed, and nothing was committed since
            return
        self.close_side()
        try:
            self.con.execute("CHECKPOINT")
        except duckdb.Error:  # the WAL holds it all the same; DuckDB checkpoints it as it closes
            _log.warning("checkpoint at close failed", exc_info=True)

    def close(self, *, clean: bool = False) -> None:
        """Close the cursors (the caller's own connection stays open) and give up the lease.

        ``clean`` (DuckDB holds every committed record): a writer also removes
        ``<db>.readers`` and ``<db>.handoff/`` (``WriterLease.close``).
        """
        self.close_side()
        if self._owns_connection and self.con is not None:
            self.con.close()
        self.con = None
        if isinstance(self.lease, WriterLease):
            self.lease.close(remove_files=clean)
        elif self.lease is not None:
            self.lease.close()
        self.lease = None

"""Committed records on their way to DuckDB: journaled, indexed as pending, applied in batches.

A commit appends its record to the journal (one fsync for a whole group)
and indexes it as pending: which sessions have rows DuckDB lacks, which
idempotency keys were added. Reads of those sessions, and look-ups of those
keys, then see every committed row. A batch stays in the index until its
DuckDB transaction committed, so a read never misses a row in between.

Locks, always taken in this order, so that a commit waits for DuckDB only when the backlog is full (below):
the handle's ``lock`` (DuckDB, applying a batch), the journal lock (sequence
numbers, appends and compaction), ``PendingIndex``'s own (microseconds).
On a real event loop a full batch is applied by the applier thread while
the journal thread goes on committing. When DuckDB falls behind (the
applier thread runs at a low priority, so a busy machine starves it first)
the backlog is bounded: past ``BACKLOG_BATCHES`` batches the journal thread
waits for the applier before its group is acknowledged, so senders slow
down instead of the pending records growing without end in memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import DatabaseError
from .batch import lower_thread_priority
from .handle import DuckHandle
from .journal import Journal
from .keyfilter import KEY_HASH_SQL, KeyFilter
from .records import IdempotencyEntry, PlainRecord, make_plain, payload_of
from .settings import temporarily

__all__ = ["Applier", "Pending", "PendingIndex"]

_log = logging.getLogger("vbgateway.store")

BACKLOG_BATCHES = 3  # pending batches beyond which the journal thread waits for the applier

# A committed record not yet in DuckDB: (seq, its JSON, the sessions it touches, its idempotency
# entries). The JSON is what DuckDB applies; the record itself is let go (fewer objects for the GC).
Pending = tuple[int, str, Collection[str], Sequence[IdempotencyEntry]]


class PendingIndex:
    """The committed records DuckDB does not hold yet, and what reads must know about them."""

    def __init__(self) -> None:
        self._state = threading.Lock()
        self._pending: list[Pending] = []  # committed, not yet in DuckDB, in sequence order
        self._applying: list[Pending] = []  # taken from _pending by the batch being applied
        self._sessions: set[str] = set()  # sessions with rows not yet in DuckDB
        self._idempotency: dict[tuple[str, str], tuple[str, str]] = {}
        self._stored_keys: KeyFilter | None = None  # a writer's filter of the keys DuckDB holds

    def __len__(self) -> int:
        return len(self._pending) + len(self._applying)

    def add(self, entries: list[Pending]) -> None:
        """Index newly committed records (in sequence order: the caller holds the journal lock)."""
        with self._state:
            self._pending.extend(entries)
            for entry in entries:
                self._note(entry)

    def _note(self, entry: Pending) -> None:
        _, _, sessions, idempotency = entry
        self._sessions.update(sessions)
        self._idempotency.update(idempotency)

    def take(self) -> list[Pending]:
        """Everything pending, as the batch now being applied (it stays indexed until ``applied``)."""
        with self._state:
            batch, self._pending = self._pending, []
            self._applying = batch
        return batch

    def applied(self, batch: list[Pending]) -> None:
        """DuckDB committed ``batch``: its keys move to the stored-key filter, the rest stays indexed."""
        with self._state:
            self._applying = []
            if self._stored_keys is not None:
                for _, _, _, idempotency in batch:
                    for (tenant_id, key), _ in idempotency:
                        self._stored_keys.add(tenant_id, key)
            self._sessions = set()
            self._idempotency = {}
            for entry in self._pending:
                self._note(entry)

    def failed(self, batch: list[Pending]) -> None:
        """DuckDB refused ``batch``: it goes back in front, to be applied again."""
        with self._state:
            self._pending[:0] = batch
            self._applying = []

    def has_session(self, session_id: str) -> bool:
        return session_id in self._sessions

    def lookup(self, tenant_id: str, key: str) -> tuple[tuple[str, str] | None, bool]:
        """(the pending entry for a tenant's key or None, whether DuckDB might hold the key).

        A batch leaves the index only after DuckDB committed it, so a key
        missing from the index is either in DuckDB or nowhere; the filter
        says "certainly nowhere" without a 1-2 ms query for most new keys.
        """
        with self._state:
            pending = self._idempotency.get((tenant_id, key))
            if pending is not None:
                return pending, True
            stored = self._stored_keys
            return None, stored is None or stored.might_contain(tenant_id, key)

    def load_stored_keys(self, hashes: np.ndarray) -> None:
        """The hashes of every key DuckDB holds (``KEY_HASH_SQL``), loaded before any batch can start."""
        self._stored_keys = KeyFilter(hashes)


class Applier:
    """Appends records to the journal and applies them to DuckDB: at once, on the applier thread, or on flush."""

    def __init__(self, handle: DuckHandle, journal: Journal, *, flush_records: int) -> None:
        self.handle = handle
        self.journal = journal
        self.index = PendingIndex()
        self.flush_records = flush_records
        self._journal_lock = threading.Lock()
        self._seq = 0
        self.closed = False  # set under the journal lock: a commit after it is refused
        self._pool: ThreadPoolExecutor | None = None
        self._scheduled = False
        self._closing = False
        self._schedule_lock = threading.Lock()
        self._apply_ended = threading.Condition(self._schedule_lock)

    # ----------------------------------------------------------------- opening
    def recover(self, applied: int) -> None:
        """Apply journal lines a crash left behind, exactly once (before any commit)."""
        self._seq = max(applied, self.journal.last_seq())
        leftovers = [(seq, rec) for seq, rec in self.journal.replay() if seq > applied]
        if leftovers:
            self.handle.write_batch([payload_of(make_plain(rec)) for _, rec in leftovers], leftovers[-1][0])
        self.journal.truncate()

    def load_stored_keys(self) -> None:
        """Hash every stored key when the writer opens; from then on each applied batch adds its own."""
        cursor = self.handle.connection().cursor()
        try:
            column = cursor.sql(f"SELECT {KEY_HASH_SQL} AS h FROM idempotency_records").fetchnumpy()
        finally:
            cursor.close()
        self.index.load_stored_keys(column["h"])

    # ----------------------------------------------------------------- committing
    def append(self, records: list[PlainRecord]) -> None:
        """Number, append and fsync ``records`` (all or nothing), then index them as pending."""
        with self._journal_lock:
            if self.closed:
                raise DatabaseError("the database is closed")
            entries = [(self._seq + i + 1, plain.record) for i, plain in enumerate(records)]
            payloads = self.journal.append(entries) or [payload_of(record) for _, record in entries]
            self._seq += len(entries)
            # still under the journal lock: the index stays in sequence order; tuples hold a pending
            # record's sessions and keys in a third of a set's and a list's memory
            self.index.add([(seq, payload, tuple(plain.sessions), tuple(plain.idempotency))
                            for (seq, _), payload, plain in zip(entries, payloads, records, strict=True)])

    def write_group(self, records: list[PlainRecord]) -> None:
        """Append and fsync a group of records, then apply a full batch here and now."""
        self.append(records)
        self.maybe_apply()

    def write_group_in_thread(self, records: list[PlainRecord]) -> None:
        """The journal thread's group: a full batch goes to the applier thread, never in the way.

        Unless the applier is ``BACKLOG_BATCHES`` batches behind: then this
        thread waits for the batch being applied, once per group (a failing
        DuckDB slows commits down but never stops them).
        """
        self.append(records)
        if len(self.index) >= self.flush_records:
            self.schedule()
            if len(self.index) >= BACKLOG_BATCHES * self.flush_records:
                self._wait_for_applier()

    def _wait_for_applier(self) -> None:
        """Wait until the background apply in progress ends (at once if none is, or the store is closing)."""
        with self._apply_ended:
            while self._scheduled and not self._closing:
                self._apply_ended.wait()

    # ----------------------------------------------------------------- applying
    def apply_pending(self) -> None:
        """Apply the pending records (caller holds the handle's lock), then drop their journal lines.

        Commits go on meanwhile: they append to the journal and to a fresh
        pending list. Inside a caller's transaction nothing is applied: the
        records wait for it to end.
        """
        if self.handle.in_transaction:
            return
        batch = self.index.take()
        if not batch:
            return
        up_to = batch[-1][0]
        try:
            self.handle.write_batch([payload for _, payload, _, _ in batch], up_to)
        except BaseException:
            self.index.failed(batch)
            raise
        self.index.applied(batch)
        try:
            self.journal.discard_through(up_to, self._journal_lock)
        except Exception:  # the batch is in DuckDB all the same; recovery skips lines up to applied_seq
            _log.warning("could not drop applied lines from the journal; will retry", exc_info=True)

    def maybe_apply(self) -> None:
        """Apply pending records once there are enough of them, in the calling thread.

        A failure here must not fail the commit that triggered it: its record
        is already durable in the journal, and the next flush (or the next
        open) applies it. While the file is lent to a reader, replies only go
        to the journal; while another thread holds DuckDB, the apply is left
        to a later commit rather than waited for.
        """
        lock = self.handle.lock
        if len(self.index) < self.flush_records or self.handle.lent or not lock.acquire(blocking=False):
            return
        try:
            if not self.handle.lent:
                self.apply_pending()
        except Exception:
            _log.exception("applying %d journal records to DuckDB failed; will retry", len(self.index))
        finally:
            lock.release()

    def schedule(self) -> None:
        """Have the applier thread apply what is pending (once at a time)."""
        with self._schedule_lock:
            if self._scheduled or self._closing or self.handle.lent:
                return
            self._scheduled = True
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vbgateway-apply",
                                                initializer=lower_thread_priority)
            self._pool.submit(self._apply_in_background)

    def _apply_in_background(self) -> None:
        """Apply what is pending on one DuckDB thread, at the applier thread's low priority.

        DuckDB would otherwise take both cores for a few hundred milliseconds,
        and every reply in flight meanwhile takes twice as long. Reads that
        need DuckDB meanwhile go to the second cursor (``DuckHandle.fetchall``)
        rather than wait for the slower batch.
        """
        try:
            with self.handle.lock:
                con = self.handle.con
                if not self.handle.lent and con is not None:
                    with temporarily(con, threads=1):  # DuckDB on this thread alone, at its priority
                        self.apply_pending()
        except Exception:
            _log.exception("applying %d journal records to DuckDB failed; will retry", len(self.index))
        finally:
            with self._apply_ended:
                self._scheduled = False
                self._apply_ended.notify_all()

    def stop(self) -> None:
        """No more background applies; wait for the one running (call without holding the handle's lock)."""
        with self._apply_ended:
            self._closing = True
            pool, self._pool = self._pool, None
            self._apply_ended.notify_all()
        if pool is not None:
            pool.shutdown(wait=True)

    def close(self, *, clean: bool = False) -> None:
        """Refuse commits from now on and let go of the journal.

        Under the journal lock, so a commit racing the close is refused rather
        than appended to a removed journal. ``clean`` (DuckDB holds every
        committed record) removes the journal file; it stays if anything is
        still pending, for the next open to apply.
        """
        with self._journal_lock:
            self.closed = True
            self.journal.close(delete=clean and not len(self.index))

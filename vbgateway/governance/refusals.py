"""Requests refused before any provider was called, kept for analytics in ``request_refusals``.

A refusal must cost next to nothing: under a burst past a limit the gateway
refuses thousands of requests a second, and a journal fsync (or a DuckDB
INSERT) for each would make refusing dearer than answering. So refusals are
rows in memory, committed to the journal as one record:

- once ``REFUSAL_BATCH`` of them are waiting (one fsync per batch);
- ``REFUSAL_FLUSH_S`` of the event loop's time after the first of a batch
  (virtual time on a ``VirtualClock``'s loop, so a simulation stays
  deterministic);
- whenever the store is flushed (every analytical read, ``gw.sql``), and at
  close.

From the journal they reach DuckDB with the replies, in the same batches.
They are counts for reports, not money: a process killed with ``kill -9``
loses at most the rows of the last second. The table is shared by every
refusal of this kind (the code says which: ``RATE_LIMIT_EXCEEDED``, ``BUDGET_EXCEEDED``).

Each refusal is also counted by tenant for ``GET /metrics``
(``vbgateway_budget_refusals_total``, ``vbgateway_rate_limit_refusals_total``):
one dict update on the counter's own values, nothing formatted until scraped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING

import orjson

from ..store.tables import RequestRefusalRow

if TYPE_CHECKING:
    from ..clock import Clock
    from ..errors import GatewayError
    from ..metrics import GatewayMetrics
    from ..store import Store

__all__ = ["MAX_WAITING", "REFUSAL_BATCH", "REFUSAL_FLUSH_S", "RefusalLog"]

REFUSAL_BATCH = 256
REFUSAL_FLUSH_S = 1.0
MAX_WAITING = 64 * REFUSAL_BATCH  # while the journal cannot be written: the oldest rows beyond go
_log = logging.getLogger("vbgateway.governance")


class RefusalLog:
    """Refusal rows waiting for the journal; ``commit`` sends them, all in one record."""

    def __init__(self, store: Store, clock: Clock, metrics: GatewayMetrics | None = None) -> None:
        self._store = store
        self._clock = clock
        self._counted = {} if metrics is None else metrics.refusal_counts()  # code -> {(tenant,): refusals}
        self._rows: list[RequestRefusalRow] = []
        self._lock = threading.Lock()  # a read on another thread may commit while the loop refuses
        self.recorded = 0  # refusals since the gateway opened, committed or not

    def __len__(self) -> int:
        return len(self._rows)

    def record(self, tenant_id: str, key_id: str | None, session_id: str | None, request_id: str | None,
               error: GatewayError) -> None:
        """Note one refusal; commits the batch when it is full (or soon, on the running loop)."""
        row = RequestRefusalRow(tenant_id, key_id, session_id, request_id, error.code, self._clock.now(),
                                orjson.dumps(error.details).decode())
        counted = self._counted.get(error.code)
        if counted is not None:
            label = (tenant_id,)
            counted[label] = counted.get(label, 0.0) + 1.0
        with self._lock:
            rows = self._rows
            rows.append(row)
            self.recorded += 1
            waiting = len(rows)
        if waiting >= REFUSAL_BATCH:
            self.flush()  # a refusal is answered as a refusal even when the journal fails
        elif waiting == 1:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            loop.call_later(REFUSAL_FLUSH_S, self.flush)

    def commit(self) -> None:
        """Journal every waiting row as one record (nothing when none waits)."""
        with self._lock:
            rows, self._rows = self._rows, []
        if rows:
            try:
                self._store.commit(rows)
            except BaseException:
                with self._lock:
                    self._rows[:0] = rows  # kept for the next try (a close, a flush)
                raise

    def flush(self) -> None:
        """Commit, logging a failure instead of raising it (the rows wait for the next try, up to a bound).

        The store's ``before_flush`` hook: a read or a close hands the rows over first. The timer's
        commit finds nothing to do after a close.
        """
        try:
            self.commit()
        except Exception:
            with self._lock:
                dropped = max(0, len(self._rows) - MAX_WAITING)
                del self._rows[:dropped]
            _log.warning("could not journal %d refused requests (%d dropped); will retry", len(self._rows), dropped,
                         exc_info=True)

"""The writer's side of lending the file to readers in other processes (the protocol is ``handoff.py``).

A thread watches for readers asking. When one asks, it applies every
pending record, closes DuckDB and lets readers in; replies meanwhile only
go to the journal. If more were committed since and a new reader asks, it
takes the file back (once no reader holds it), applies and lends it again.
Any other use of the connection takes it back for good
(``DuckHandle.connection``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .handle import DuckHandle
from .handoff import WriterLease

__all__ = ["WATCH_S", "Lender"]

WATCH_S = 0.05  # how often the writer looks for readers asking for the file


class Lender:
    """Lends ``handle``'s file on request; ``apply_pending`` applies what is committed (under the handle's lock)."""

    def __init__(self, handle: DuckHandle, apply_pending: Callable[[], None], pending: Callable[[], int]) -> None:
        assert isinstance(handle.lease, WriterLease)
        self._handle = handle
        self._lease: WriterLease = handle.lease
        self._apply_pending = apply_pending
        self._pending = pending
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="vbgateway-lender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        handle = self._handle
        while not self._stop.wait(WATCH_S):
            if not self._lease.requested():
                continue
            with handle.lock:
                if handle.con is not None and not handle.lent:
                    self._lend()
                elif handle.lent and self._pending() and handle.take_back_if_free():
                    self._lend()  # committed since we lent it: applied, then lent again

    def _lend(self) -> None:
        self._apply_pending()
        self._handle.lend()

    def stop(self) -> None:
        """End the watcher (from any thread but its own: it may be the one closing the store)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

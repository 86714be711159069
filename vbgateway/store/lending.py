"""The writer's side of lending the file to readers in other processes (the protocol is ``handoff.py``).

A thread watches for readers asking. When one asks, it applies every
pending record, closes DuckDB and lets readers in; replies meanwhile only
go to the journal. If more were committed since and a new reader asks, it
takes the file back (once no reader holds it), applies and lends it again.
Once the readers have left and a batch's worth of records waits, it takes
the file back too: otherwise a gateway lent to one report, and never asked
again, would keep every later reply in memory and in the journal until it
closed. Any other use of the connection takes it back for good
(``DuckHandle.connection``).
"""

from __future__ import annotations

import threading

from .handle import DuckHandle
from .handoff import WriterLease
from .pending import Applier

__all__ = ["WATCH_S", "Lender"]

WATCH_S = 0.05  # how often the writer looks for readers asking for the file, or gone


class Lender:
    """Lends ``handle``'s file on request; ``applier`` applies what is committed."""

    def __init__(self, handle: DuckHandle, applier: Applier) -> None:
        assert isinstance(handle.lease, WriterLease)
        self._handle = handle
        self._lease: WriterLease = handle.lease
        self._applier = applier
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="vbgateway-lender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        handle = self._handle
        while not self._stop.wait(WATCH_S):
            if self._lease.requested():
                with handle.lock:
                    if handle.con is not None and not handle.lent:
                        self._lend()
                    elif handle.lent and len(self._applier.index) and handle.take_back_if_free():
                        self._lend()  # committed since we lent it: applied, then lent again
            elif handle.lent and len(self._applier.index) >= self._applier.flush_records:
                self._take_back()

    def _lend(self) -> None:
        self._applier.apply_pending()
        self._handle.lend()

    def _take_back(self) -> None:
        """Hold the file again if no reader does, and have the waiting batch applied as any other."""
        handle = self._handle
        with handle.lock:
            if not (handle.lent and handle.take_back_if_free()):
                return  # a reader still holds it: looked at again in WATCH_S
            handle.open_side()
        self._applier.schedule()

    def stop(self) -> None:
        """End the watcher (from any thread but its own: it may be the one closing the store)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

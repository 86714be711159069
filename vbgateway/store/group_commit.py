"""Group commit: concurrent callers' records share one fsync, each caller returning once its own is durable.

On real time a journal thread writes each group while the event loop keeps
serving, and whatever arrives meanwhile forms the next group. On virtual
time (a ``VirtualClock``'s loop) the group is written on the loop itself,
``window_s`` of the loop's time after its first record, so a run stays
deterministic; the store is told so when it is opened (``Gateway.open``
passes the clock's ``commit_window_s``), not by looking at the loop it runs
on. With no fsync to share (virtual time and no journal: a simulation's own
database), a record is written at once, without a window, a timer or a
future: a third of a simulated reply's event-loop turns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from ..errors import DatabaseError, GatewayError, InternalError
from .records import PlainRecord

__all__ = ["GroupCommit", "not_durable"]

Write = Callable[[list[PlainRecord]], None]


def not_durable(cause: BaseException) -> GatewayError:
    """What a caller whose record could not be committed is told (the cause stays attached).

    The store's own database errors (a closed or unwritable store) already say
    what is wrong and pass through; anything else becomes INTERNAL_ERROR.
    """
    if isinstance(cause, DatabaseError):
        return cause
    error = InternalError("could not make the reply durable")
    error.__cause__ = cause
    return error


class GroupCommit:
    """Queues records from the event loop and writes them in groups.

    ``write`` appends a group on the loop's thread (virtual time);
    ``write_in_thread`` on the journal thread (real time).
    """

    def __init__(self, write: Write, write_in_thread: Write, *, window_s: float | None, fsync: bool) -> None:
        self._write = write
        self._write_in_thread = write_in_thread
        self.window_s = window_s
        self._at_once = window_s is not None and not fsync
        self._queue: list[tuple[PlainRecord, asyncio.Future[None]]] = []
        self._drain_scheduled = False
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, record: PlainRecord) -> Awaitable[None] | None:
        """Queue ``record`` on the running loop: an awaitable that ends once it is durable, or None if it is already.

        Not a coroutine: the send path awaits what it returns, and a record
        written at once costs no coroutine, future or timer at all.
        """
        if self._at_once:
            try:
                self._write([record])
            except Exception as exc:
                raise not_durable(exc)  # noqa: B904 (the cause is attached)
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append((record, future))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            if self.window_s is not None:
                loop.call_later(self.window_s, self._drain)
            else:
                loop.call_soon(self._drain_in_thread, loop)
        return future

    def _take_queue(self) -> list[tuple[PlainRecord, asyncio.Future[None]]]:
        queue, self._queue = self._queue, []
        return queue

    def _drain(self) -> None:
        self._drain_scheduled = False
        queue = self._take_queue()
        if queue:
            try:
                self._write([record for record, _ in queue])
            except Exception as exc:
                self._settle(queue, exc)
            else:
                self._settle(queue, None)

    def _drain_in_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        queue = self._take_queue()
        if not queue:
            self._drain_scheduled = False
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vbgateway-journal")
        done = loop.run_in_executor(self._pool, self._write_in_thread, [record for record, _ in queue])

        def written(result: asyncio.Future[None]) -> None:
            self._settle(queue, result.exception())
            if self._queue:  # arrived while we were writing: the next group
                loop.call_soon(self._drain_in_thread, loop)
            else:
                self._drain_scheduled = False

        done.add_done_callback(written)

    @staticmethod
    def _settle(queue: list[tuple[PlainRecord, asyncio.Future[None]]], failure: BaseException | None) -> None:
        error = not_durable(failure) if failure is not None else None
        for _, future in queue:
            if not future.done():
                future.set_exception(error) if error is not None else future.set_result(None)

    def close(self) -> None:
        """Wait for the group being written (the journal thread ends)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

"""The asyncio loop behind ``VirtualClock.run``: time is virtual and jumps to the next timer.

A simulated month is tens of millions of loop turns, timers and callbacks,
so the loop keeps asyncio's semantics (timers fire in deadline order, a
callback scheduled during a turn runs in the next one) with less work per
step: its timers live in a heap of ``(when, sequence, handle)`` tuples that
Python compares natively (asyncio's heap calls a Python ``__lt__`` for
every comparison), handles are made without asyncio's debug bookkeeping, and
a turn reads virtual time directly. Timers due at the same instant fire in
the order they were set. asyncio's debug mode (slow-callback warnings) has
nothing to measure here: a callback takes no virtual time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import selectors
from asyncio import events
from collections.abc import Callable
from contextvars import Context, copy_context
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .clock import VirtualClock

__all__ = ["VirtualLoop", "wake"]

_MAX_ADVANCE_S = 24 * 3600.0  # the longest single jump (asyncio's longest select timeout)
_POLL_EVERY = 64  # loop turns between looks at real I/O (see _JumpingSelector.select)
_MIN_TIMERS_TO_PRUNE = 100  # prune cancelled timers once there are this many timers, half of them cancelled


def wake(future: asyncio.Future[None]) -> None:
    """A virtual sleep's timer: end the sleep unless it was cancelled meanwhile."""
    if not future.cancelled():
        future.set_result(None)


class _Handle(events.Handle):
    """``asyncio.Handle`` made without asking the loop whether it is in debug mode."""

    __slots__ = ()

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...], loop: asyncio.AbstractEventLoop,
                 context: Context | None) -> None:
        self._context = context if context is not None else copy_context()
        self._loop, self._callback, self._args = loop, callback, args
        self._cancelled, self._repr, self._source_traceback = False, None, None


class _Timer(events.TimerHandle):
    """``asyncio.TimerHandle`` made the same way; ``cancel()`` tells the loop as asyncio's does."""

    __slots__ = ()

    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...],
                 loop: asyncio.AbstractEventLoop, context: Context | None) -> None:
        self._context = context if context is not None else copy_context()
        self._loop, self._callback, self._args = loop, callback, args
        self._cancelled, self._repr, self._source_traceback = False, None, None
        self._when, self._scheduled = when, True


class _JumpingSelector(selectors.BaseSelector):
    """A selector that advances virtual time instead of blocking for a timer."""

    def __init__(self, clock: VirtualClock) -> None:
        self._real = selectors.DefaultSelector()
        self._clock = clock
        self._turns = 0

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """Real I/O first; otherwise jump virtual time to the next timer.

        A simulation does no real I/O: the only thing that can arrive is a
        worker thread waking the loop. Asking the kernel on every turn of the
        loop was a twentieth of a simulation's time, so between blocking
        waits the kernel is asked only every ``_POLL_EVERY`` turns; a thread's
        result is then seen a few turns later, which virtual time never made
        punctual anyway (time jumps whenever the loop is idle).
        """
        if timeout is None:  # no timer at all: only real I/O can wake us
            return self._real.select(None)
        self._turns += 1
        if self._turns >= _POLL_EVERY:
            self._turns = 0
            ready = self._real.select(0)
            if ready:
                return ready
        if timeout > 0:
            self._clock.advance(min(timeout, _MAX_ADVANCE_S))
        return []

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop whose time is a VirtualClock's."""

    def __init__(self, clock: VirtualClock) -> None:
        self.virtual_clock = clock
        self._timers: list[tuple[float, int, _Timer]] = []
        self._timer_order = itertools.count()
        super().__init__(selector=_JumpingSelector(clock))

    def time(self) -> float:
        return self.virtual_clock._elapsed

    def call_soon(self, callback: Callable[..., object], *args: Any, context: Context | None = None) -> events.Handle:
        if self._closed:
            raise RuntimeError("Event loop is closed")
        handle = _Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_at(self, when: float, callback: Callable[..., object], *args: Any,
                context: Context | None = None) -> events.TimerHandle:
        if self._closed:
            raise RuntimeError("Event loop is closed")
        timer = _Timer(when, callback, args, self, context)
        heapq.heappush(self._timers, (when, next(self._timer_order), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any,
                   context: Context | None = None) -> events.TimerHandle:
        return self.call_at(self.virtual_clock._elapsed + delay, callback, *args, context=context)

    def _run_once(self) -> None:
        """One turn: drop cancelled timers, wait (jump) for the next, run what is due.

        As in asyncio: the callbacks ready when the turn starts run, those
        they schedule wait for the next turn. A sleep's timer (``wake``) is
        run inline: it only resolves a future, and a month has tens of
        millions of them.
        """
        timers, ready, clock = self._timers, self._ready, self.virtual_clock
        count = len(timers)
        if count > _MIN_TIMERS_TO_PRUNE and 2 * self._timer_cancelled_count > count:
            for _, _, timer in timers:
                if timer._cancelled:
                    timer._scheduled = False
            self._timers = timers = [entry for entry in timers if not entry[2]._cancelled]
            heapq.heapify(timers)
            self._timer_cancelled_count = 0
        while timers and timers[0][2]._cancelled:
            self._timer_cancelled_count -= 1
            heapq.heappop(timers)[2]._scheduled = False
        if ready or self._stopping:
            timeout: float | None = 0
        elif timers:
            timeout = max(0.0, timers[0][0] - clock._elapsed)
        else:
            timeout = None
        io_events = self._selector.select(timeout)
        if io_events:
            self._process_events(io_events)
        end = clock._elapsed + self._clock_resolution
        while timers and timers[0][0] < end:
            timer = heapq.heappop(timers)[2]
            timer._scheduled = False
            ready.append(timer)
        for _ in range(len(ready)):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            if handle._callback is wake:  # a virtual sleep ends: resolve it here, not through Handle._run
                future = handle._args[0]
                if not future.cancelled():
                    future.set_result(None)
            else:
                handle._run()

    def close(self) -> None:
        super().close()
        self._timers.clear()

    def group_commit(self, callback: Callable[[], None]) -> None:
        """Schedule a group commit ``commit_window_s`` of virtual time from now.

        Replies that finish within the window share one fsync, as in a
        database's group commit; the wait costs virtual time, not wall time.
        """
        self.call_later(self.virtual_clock.commit_window_s, callback)

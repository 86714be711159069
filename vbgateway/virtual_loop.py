"""The asyncio loop behind ``VirtualClock.run``: time is virtual and jumps to the next timer.

``VirtualLoop`` is asyncio's selector loop with two changes made through
public seams: ``time()`` is the clock's virtual time, and its selector, when
nothing is ready, moves that time forward to the next timer instead of
blocking until it is due. Timers therefore fire in the same order as in real
time, deterministically, with no waiting. The cheaper timer queue and loop
turn it runs on come from ``asyncio_internals.TimerHeapLoop``, the one place
that touches asyncio's private API (and refuses a Python it was not verified
on).
"""

from __future__ import annotations

import selectors
from typing import TYPE_CHECKING, Any

from .asyncio_internals import TimerHeapLoop, wake

if TYPE_CHECKING:
    from .clock import VirtualClock

__all__ = ["VirtualLoop", "wake"]

_MAX_ADVANCE_S = 24 * 3600.0  # the longest single jump (asyncio's longest select timeout)
_POLL_EVERY = 64  # loop turns between looks at real I/O (see _JumpingSelector.select)


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
        worker thread waking the loop. A system call on every turn would be a
        large share of a turn's cost, so between blocking waits the kernel is
        asked only every ``_POLL_EVERY`` turns; a thread's result is then seen
        a few turns later, which virtual time never made punctual anyway (time
        jumps whenever the loop is idle).
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


class VirtualLoop(TimerHeapLoop):
    """An event loop whose time is a VirtualClock's.

    Raises ``asyncio_internals.UnsupportedPythonError`` on a Python whose
    asyncio internals were not verified (see that module).
    """

    def __init__(self, clock: VirtualClock, *, check_version: bool = True) -> None:
        super().__init__(clock, _JumpingSelector(clock), check_version=check_version)

    def time(self) -> float:
        return self.virtual_clock._elapsed

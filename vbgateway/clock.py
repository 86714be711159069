"""The one source of "now", of elapsed time and of sleeping.

Everything in the gateway that stamps a row, measures a latency, backs off or
times out asks the clock injected into it, never ``time`` or ``datetime``
directly. That single seam is what lets the simulation workbench push a month
of traffic through the real gateway code in a minute: on a ``VirtualClock``
sleeps and timeouts jump instead of wait.

``VirtualClock.run(coro)`` runs a coroutine on an asyncio loop whose
``time()`` is virtual and whose selector, instead of blocking until the next
timer is due, moves virtual time forward to it. Timers therefore fire in the
same order as in real time, deterministically, with no waiting. Work handed
to threads does not follow virtual time, so the gateway keeps its send path
on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from .errors import ValidationError
from .virtual_loop import VirtualLoop, wake

__all__ = ["Clock", "SystemClock", "VirtualClock", "real_deadline", "real_time_left", "utc", "wait_real"]

_MICROSECOND = timedelta(microseconds=1)

T = TypeVar("T")
LOOPS = ("auto", "asyncio", "uvloop")  # what ``SystemClock(loop=...)`` accepts


def utc(year: int, month: int = 1, day: int = 1, hour: int = 0, minute: int = 0) -> datetime:
    """Shorthand for an aware UTC datetime, handy for ``VirtualClock(start=...)``."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def real_deadline(seconds: float) -> float:
    """A deadline in real (process) time, for waiting on other processes."""
    return time.monotonic() + seconds


def real_time_left(deadline: float) -> float:
    return deadline - time.monotonic()


def wait_real(seconds: float) -> None:
    """Block the calling thread for ``seconds`` of real time.

    Only for coordination with other processes (file locks), which happens in
    real time whatever clock the gateway runs on; gateway behaviour never
    waits through this.
    """
    threading.Event().wait(seconds)


class Clock(ABC):
    """What the gateway needs to know about time."""

    @abstractmethod
    def now(self) -> datetime:
        """Current wall time, timezone-aware UTC."""

    @abstractmethod
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for measuring latency."""

    @abstractmethod
    def sleep(self, seconds: float) -> Awaitable[None]:
        """Wait ``seconds`` on this clock (await the result)."""

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[Any]:
        """A deadline on this clock: the loop's time, so virtual on a virtual loop."""
        return _Deadline(seconds)

    @abstractmethod
    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine to completion on a loop that follows this clock."""


class _Deadline:
    """``asyncio.timeout`` with only what a provider attempt needs.

    Every provider attempt runs under a deadline, so its cost is paid several
    times per message. Same semantics as ``asyncio.timeout`` (a timer cancels
    the task; the cancellation becomes ``TimeoutError`` unless someone else
    cancelled the task too), without its rescheduling and state machine.
    """

    __slots__ = ("_cancelling", "_expired", "_handle", "_seconds", "_task")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._expired = False

    async def __aenter__(self) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a deadline must be used inside a task")
        self._task, self._cancelling = task, task.cancelling()
        self._handle = loop.call_at(loop.time() + self._seconds, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._handle.cancel()
        if self._expired and self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc


@functools.cache
def _loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``SystemClock.run`` builds: uvloop's for ``"uvloop"`` (and ``"auto"`` when it is
    installed, with the ``api`` extra), None for asyncio's own."""
    if loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if loop == "uvloop":
            raise ValidationError("loop='uvloop' needs uvloop installed (the api extra)", details={"loop": loop}) from None
        return None
    return uvloop.new_event_loop


class SystemClock(Clock):
    """Real time: what a deployed gateway uses.

    ``run`` drives its coroutine on uvloop when it is installed (``loop="auto"``),
    as ``vbgateway serve`` does under uvicorn: the same asyncio semantics, with
    the loop's own scheduling of the send path's tasks, timers and futures in
    compiled code instead of Python. ``loop="asyncio"`` keeps asyncio's loop.
    """

    def __init__(self, loop: str = "auto") -> None:
        if loop not in LOOPS:
            raise ValidationError(f"loop must be one of {', '.join(LOOPS)}", details={"loop": str(loop)[:40]})
        if loop == "uvloop":
            _loop_factory(loop)  # refused here, not at the first run, when uvloop is missing
        self._loop = loop

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=_loop_factory(self._loop)) as runner:
            return runner.run(coro)

    def __repr__(self) -> str:
        return "SystemClock()" if self._loop == "auto" else f"SystemClock(loop={self._loop!r})"


class VirtualClock(Clock):
    """Simulated time that starts at ``start`` and moves only when told to.

    Inside ``run()`` it moves by itself: whenever the loop has nothing to do
    but wait for a timer, time jumps to that timer. Outside ``run()``,
    ``sleep`` simply advances the clock, so a VirtualClock can also be used
    from an ordinary loop (a notebook), although deadlines then do not fire.

    ``commit_window_s`` is the group-commit delay of the store on this clock:
    replies finishing within it share one fsync (``Gateway.open`` hands it to the
    store's group commit).
    """

    def __init__(self, start: datetime | None = None, *, commit_window_s: float = 0.02) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if commit_window_s < 0:
            raise ValueError("commit_window_s must be >= 0")
        self.commit_window_s = commit_window_s
        if start.tzinfo is None:
            raise ValueError("VirtualClock start must be timezone-aware (UTC)")
        self.start = start.astimezone(UTC)
        self._elapsed = 0.0
        self._now: tuple[float, datetime] = (0.0, self.start)  # the last answer of now(), while time stands still

    def now(self) -> datetime:
        """The virtual instant; asked several times per reply at one instant, so the last answer is kept."""
        elapsed, value = self._now
        if elapsed != self._elapsed:
            elapsed = self._elapsed
            value = self.start + _MICROSECOND * round(elapsed * 1_000_000)  # cheaper than timedelta(microseconds=)
            self._now = (elapsed, value)
        return value

    def monotonic(self) -> float:
        return self._elapsed

    def advance(self, seconds: float) -> None:
        """Move time forward by hand (never backwards)."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._elapsed += seconds

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Wait ``seconds`` of virtual time (awaited like ``asyncio.sleep``).

        On this clock's own loop the wait is a bare future that a timer
        resolves: ``asyncio.sleep`` minus its coroutine, and sleeping happens
        several times per simulated reply. A sleep cancelled meanwhile leaves
        its timer to fire into a cancelled future, which does nothing.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not awaited yet: decide once it runs
            loop = None
        if seconds > 0 and getattr(loop, "virtual_clock", None) is self:
            assert loop is not None
            future = loop.create_future()
            loop.call_at(self._elapsed + seconds, wake, future)
            return future
        return self._sleep(seconds)

    async def _sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        if isinstance(loop, VirtualLoop) and loop.virtual_clock is self:
            await asyncio.sleep(seconds)
        else:
            self.advance(max(0.0, seconds))
            await asyncio.sleep(0)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on a ``VirtualLoop`` of this clock.

        Raises ``UnsupportedPythonError`` (code ``UNSUPPORTED_PYTHON``) on a
        Python whose asyncio internals the loop was not verified on (see
        ``asyncio_internals``); nothing has run and the clock has not moved.
        """
        loop = VirtualLoop(self)
        try:
            return loop.run_until_complete(coro)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now().isoformat()})"

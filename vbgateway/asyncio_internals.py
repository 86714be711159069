"""Every use of asyncio's private API, in one place, behind a check of the running Python.

The virtual loop (``virtual_loop.VirtualLoop``) is asyncio's selector loop
made cheaper per step, because a simulated month is tens of millions of loop
turns, timers and callbacks. Those savings replace private methods of
``asyncio.BaseEventLoop`` (``_run_once``) and read or set private attributes
of the loop and of its handles (``_ready``, ``_timer_cancelled_count``,
``Handle._callback`` ...). CPython may change any of them in any release, and
a silent change would not crash: it would reorder timers or lose callbacks,
and a seeded simulation would quietly give other results.

So this module holds all of it, and ``TimerHeapLoop`` refuses to start on a
Python it was not verified on (``VERIFIED_PYTHONS``): it raises
``UnsupportedPythonError`` rather than guess. It also checks, on every
verified version, that the private names it relies on are still there. The
test suite runs ``selftest()`` (in ``asyncio_selftest``) on every verified
interpreter found on the machine.

Escape hatch, for someone on a newer Python before a release verifies it:
run ``python -m vbgateway.asyncio_selftest``; if it passes, set
``VB_TRUST_ASYNCIO`` to that version (e.g. ``VB_TRUST_ASYNCIO=3.14``). The
variable names one version, so it never carries over to the next one.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import os
import selectors
import sys
from asyncio import base_events, events
from collections.abc import Callable, Mapping
from contextvars import Context, copy_context
from typing import TYPE_CHECKING, Any, Self, TypeVarTuple

from .errors import UnsupportedPythonError

if TYPE_CHECKING:
    from .clock import VirtualClock

__all__ = ["TRUST_ENV", "VERIFIED_PYTHONS", "TimerHeapLoop", "UnsupportedPythonError", "check_python", "wake"]

VERIFIED_PYTHONS: tuple[tuple[int, int], ...] = ((3, 11), (3, 12), (3, 13))
TRUST_ENV = "VB_TRUST_ASYNCIO"

_Args = TypeVarTuple("_Args")

_MIN_TIMERS_TO_PRUNE = 100  # prune cancelled timers once there are this many timers, half of them cancelled

# What TimerHeapLoop reads, sets or replaces that asyncio does not promise to keep.
_HANDLE_SLOTS = ("_callback", "_args", "_cancelled", "_loop", "_source_traceback", "_repr", "_context")
_TIMER_SLOTS = ("_when", "_scheduled")
_LOOP_METHODS = ("_process_events", "_timer_handle_cancelled")
_LOOP_ATTRIBUTES = ("_ready", "_closed", "_stopping", "_timer_cancelled_count", "_clock_resolution", "_selector")


def _running_python() -> tuple[int, int]:
    return sys.version_info.major, sys.version_info.minor


def _version_text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def check_python(version: tuple[int, int] | None = None, environ: Mapping[str, str] | None = None) -> None:
    """Raise ``UnsupportedPythonError`` unless ``version`` (default: the running one) is verified or trusted."""
    if version is None:
        version = _running_python()
    if version in VERIFIED_PYTHONS:
        return
    environ = os.environ if environ is None else environ
    text = _version_text(version)
    if environ.get(TRUST_ENV, "").strip() == text:
        return
    verified = ", ".join(_version_text(v) for v in VERIFIED_PYTHONS)
    raise UnsupportedPythonError(
        f"the virtual clock's event loop relies on asyncio internals verified on Python {verified}, not on "
        f"Python {text}; run `python -m vbgateway.asyncio_selftest` and, if it passes, set {TRUST_ENV}={text}",
        details={"python": text, "verified": [_version_text(v) for v in VERIFIED_PYTHONS], "trustEnv": TRUST_ENV})


def _missing_internals(loop: asyncio.AbstractEventLoop) -> list[str]:
    """The private names this module relies on that this asyncio lacks."""
    handle_slots = set(events.Handle.__slots__)
    timer_slots = set(events.TimerHandle.__slots__)
    missing = [f"Handle.{name}" for name in _HANDLE_SLOTS if name not in handle_slots]
    missing += [f"TimerHandle.{name}" for name in _TIMER_SLOTS if name not in timer_slots]
    missing += [f"BaseEventLoop.{name}" for name in _LOOP_METHODS if not callable(getattr(loop, name, None))]
    missing += [f"BaseEventLoop.{name}" for name in _LOOP_ATTRIBUTES if not hasattr(loop, name)]
    if hasattr(loop, "_ready") and not isinstance(loop._ready, collections.deque):
        missing.append("BaseEventLoop._ready as a deque")
    if "_run_once" not in vars(base_events.BaseEventLoop):
        missing.append("BaseEventLoop._run_once as the loop's turn")
    return missing


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


class TimerHeapLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop with the same semantics and less work per step, on a VirtualClock.

    Timers fire in deadline order, and those due at the same instant in the
    order they were set; a callback scheduled during a turn runs in the next
    one. Timers live in a heap of ``(when, sequence, handle)`` tuples that
    Python compares natively (asyncio's heap calls a Python ``__lt__`` for
    every comparison), handles are made without asyncio's debug bookkeeping,
    and a turn reads virtual time directly. asyncio's debug mode
    (slow-callback warnings) has nothing to measure here: a callback takes no
    virtual time.
    """

    if TYPE_CHECKING:  # asyncio's private attributes used below (typeshed leaves them out)
        _ready: collections.deque[Any]  # asyncio's handles and ours, read through their private slots
        _closed: bool
        _stopping: bool
        _selector: selectors.BaseSelector
        _clock_resolution: float
        _timer_cancelled_count: int

        def _process_events(self, event_list: list[tuple[selectors.SelectorKey, int]]) -> None: ...

    def __new__(cls, *args: Any, check_version: bool = True, **kwargs: Any) -> Self:
        """Refuse an unverified Python before a loop (or its selector) exists.

        ``check_version=False`` is for ``asyncio_selftest`` alone, which must
        try an unverified Python.
        """
        if check_version:
            check_python()
        return super().__new__(cls)

    def __init__(self, clock: VirtualClock, selector: selectors.BaseSelector, *, check_version: bool = True) -> None:
        """``check_version`` was acted on by ``__new__``; the internals are checked here, once they exist."""
        self.virtual_clock = clock
        self._timers: list[tuple[float, int, _Timer]] = []
        self._timer_order = itertools.count()
        super().__init__(selector=selector)
        missing = _missing_internals(self)
        if missing:
            super().close()
            raise UnsupportedPythonError(
                f"this Python's asyncio lacks internals the virtual clock's event loop relies on: {', '.join(missing)}",
                details={"python": _version_text(_running_python()), "missing": missing})

    def call_soon(self, callback: Callable[[*_Args], object], *args: *_Args,
                  context: Context | None = None) -> events.Handle:
        if self._closed:
            raise RuntimeError("Event loop is closed")
        handle = _Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_at(self, when: float, callback: Callable[[*_Args], object], *args: *_Args,
                context: Context | None = None) -> events.TimerHandle:
        if self._closed:
            raise RuntimeError("Event loop is closed")
        timer = _Timer(when, callback, args, self, context)
        heapq.heappush(self._timers, (when, next(self._timer_order), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[[*_Args], object], *args: *_Args,
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

"""Does this Python's asyncio still behave as the virtual loop needs?

``asyncio_internals`` relies on asyncio internals that CPython does not
promise to keep. ``selftest()`` runs, on the interpreter it is called from,
each behaviour a simulation depends on (timer order, turn order,
cancellation, deadlines, threads waking the loop, contexts, errors, closing)
on a real ``VirtualLoop``, and raises ``UnsupportedPythonError`` naming the
first one that fails. It uses only the standard library and vbgateway's clock
and loop modules, so it can run on an interpreter without the project's
dependencies; the test suite runs it on every verified Python it finds.

    python -m vbgateway.asyncio_selftest

prints the report; on a Python not yet verified it is the check to run
before trusting it (see ``asyncio_internals``).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import platform
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from .asyncio_internals import TRUST_ENV, VERIFIED_PYTHONS, UnsupportedPythonError, check_python
from .clock import VirtualClock
from .virtual_loop import VirtualLoop

__all__ = ["CHECKS", "main", "selftest"]

_WATCHDOG_S = 20.0  # real seconds after which a check that never finishes counts as failed


def _run(clock: VirtualClock, coro: Coroutine[Any, Any, Any]) -> Any:
    """``VirtualClock.run`` without the version check, stopped by a watchdog if the loop never finishes."""
    loop = VirtualLoop(clock, check_version=False)
    watchdog = threading.Timer(_WATCHDOG_S, loop.call_soon_threadsafe, (loop.stop,))
    watchdog.daemon = True
    watchdog.start()
    try:
        return loop.run_until_complete(coro)
    finally:
        watchdog.cancel()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _expect(what: str, actual: object, expected: object) -> None:
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def _timers_fire_in_deadline_order() -> None:
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    async def main() -> None:
        await asyncio.gather(sleeper("c", 3.0), sleeper("a", 1.0), sleeper("d", 3600.0), sleeper("b", 2.5))

    _run(clock, main())
    _expect("wake order", woke, [("a", 1.0), ("b", 2.5), ("c", 3.0), ("d", 3600.0)])


def _equal_deadlines_fire_in_the_order_set() -> None:
    clock = VirtualClock()

    async def main() -> list[int]:
        loop, order = asyncio.get_running_loop(), list[int]()
        for i in range(50):
            loop.call_later(1.5, order.append, i)
        await clock.sleep(2)
        return order

    _expect("order of timers due at one instant", _run(clock, main()), list(range(50)))


def _callbacks_scheduled_in_a_turn_run_in_the_next() -> None:
    clock = VirtualClock()

    async def main() -> list[str]:
        loop, order = asyncio.get_running_loop(), list[str]()

        def first() -> None:
            order.append("first")
            loop.call_soon(order.append, "third")

        loop.call_soon(first)
        loop.call_soon(order.append, "second")
        loop.call_later(5, lambda: order.append(f"timer at {clock.monotonic():g}"))
        await clock.sleep(6)
        return order

    _expect("callback order", _run(clock, main()), ["first", "second", "third", "timer at 5"])


def _cancelled_timers_neither_fire_nor_move_time() -> None:
    clock = VirtualClock()

    async def main() -> tuple[bool, bool, float]:
        loop = asyncio.get_running_loop()
        fired: list[int] = []
        sleeps = [asyncio.ensure_future(clock.sleep(100 + i)) for i in range(100)]
        handles = [loop.call_later(50 + i, fired.append, i) for i in range(300)]  # enough to prune the heap
        await clock.sleep(1)
        for sleep in sleeps:
            sleep.cancel()
        for handle in handles:
            handle.cancel()
        await clock.sleep(2)
        return all(s.cancelled() for s in sleeps), all(h.cancelled() for h in handles) and not fired, clock.monotonic()

    _expect("cancelled sleeps, cancelled timers, final time", _run(clock, main()), (True, True, 3.0))


def _a_deadline_cancels_work_at_its_virtual_time() -> None:
    clock = VirtualClock()

    async def main() -> tuple[str, float]:
        try:
            async with clock.timeout(2):
                await clock.sleep(10)
        except TimeoutError:
            return "timeout", clock.monotonic()
        return "no timeout", clock.monotonic()

    _expect("deadline", _run(clock, main()), ("timeout", 2.0))


def _a_worker_thread_wakes_the_loop() -> None:
    clock = VirtualClock()

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        in_thread = await loop.run_in_executor(None, sum, range(10))
        future: asyncio.Future[int] = loop.create_future()
        threading.Thread(target=loop.call_soon_threadsafe, args=(future.set_result, 7)).start()
        return in_thread, await future

    _expect("results handed back by threads", _run(clock, main()), (45, 7))


def _callbacks_run_in_their_context() -> None:
    clock = VirtualClock()
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("variable", default="unset")

    async def main() -> list[str]:
        loop, seen = asyncio.get_running_loop(), []
        context = contextvars.copy_context()
        context.run(variable.set, "in context")
        loop.call_soon(lambda: seen.append(variable.get()), context=context)
        loop.call_later(1, lambda: seen.append(variable.get()), context=context)
        loop.call_soon(lambda: seen.append(variable.get()))
        await clock.sleep(2)
        return seen

    _expect("context variable seen by callbacks", _run(clock, main()), ["in context", "unset", "in context"])


def _a_failing_callback_reaches_the_exception_handler() -> None:
    clock = VirtualClock()

    def fail() -> None:
        raise ValueError("boom")

    async def main() -> list[str]:
        loop, caught = asyncio.get_running_loop(), []
        loop.set_exception_handler(lambda _, context: caught.append(repr(context.get("exception"))))
        loop.call_soon(fail)
        loop.call_later(1, fail)
        await clock.sleep(2)
        return caught

    _expect("errors handed to the handler", _run(clock, main()), ["ValueError('boom')"] * 2)


def _a_closed_loop_refuses_new_callbacks() -> None:
    loop = VirtualLoop(VirtualClock(), check_version=False)
    loop.close()
    refused = []
    for delay in (None, 1.0):
        try:
            if delay is None:
                loop.call_soon(print)
            else:
                loop.call_later(delay, print)
        except RuntimeError:
            refused.append(delay)
    _expect("refusals after close", refused, [None, 1.0])


CHECKS: dict[str, Callable[[], None]] = {
    "timers fire in deadline order at their deadlines": _timers_fire_in_deadline_order,
    "timers due at one instant fire in the order they were set": _equal_deadlines_fire_in_the_order_set,
    "callbacks scheduled during a turn run in the next turn": _callbacks_scheduled_in_a_turn_run_in_the_next,
    "cancelled timers neither fire nor move time": _cancelled_timers_neither_fire_nor_move_time,
    "a deadline cancels work at its virtual time": _a_deadline_cancels_work_at_its_virtual_time,
    "a worker thread wakes the loop": _a_worker_thread_wakes_the_loop,
    "callbacks run in their context": _callbacks_run_in_their_context,
    "a failing callback reaches the exception handler": _a_failing_callback_reaches_the_exception_handler,
    "a closed loop refuses new callbacks": _a_closed_loop_refuses_new_callbacks,
}


def selftest() -> dict[str, Any]:
    """Run every check; return a report, or raise ``UnsupportedPythonError`` naming the failed check."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:  # whatever breaks, this Python cannot run the loop as verified
            raise UnsupportedPythonError(f"the virtual loop fails on Python {platform.python_version()}: {name}: {exc}",
                                         details={"python": version, "check": name}) from exc
    try:
        check_python()
        trusted = True
    except UnsupportedPythonError:
        trusted = False
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "executable": sys.executable, "passed": list(CHECKS),
            "verified": (sys.version_info.major, sys.version_info.minor) in VERIFIED_PYTHONS, "trusted": trusted}


def main() -> int:
    """Print the report; exit 1 if a check failed."""
    try:
        report = selftest()
    except UnsupportedPythonError as exc:
        print(json.dumps({"error": exc.code, "message": exc.message, **exc.details}))
        return 1
    print(json.dumps(report, indent=1))
    if not report["trusted"]:
        print(f"every check passed, but Python {report['python']} is not verified: "
              f"set {TRUST_ENV}={sys.version_info.major}.{sys.version_info.minor} to use it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

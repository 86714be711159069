"""Specification of the one clock: virtual time that jumps, real time that is UTC,
and no other module reading the time or sleeping on its own."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

import vbgateway
from vbgateway import clock as clock_module
from vbgateway.clock import SystemClock, VirtualClock, utc
from vbgateway.errors import ValidationError

START = datetime(2026, 1, 1, tzinfo=UTC)
PACKAGE_DIR = Path(vbgateway.__file__).parent


# --- VirtualClock.run -----------------------------------------------------------------------


def test_an_hour_long_sleep_on_a_virtual_clock_takes_well_under_half_a_second_of_wall_time() -> None:
    clock = VirtualClock(start=START)
    wall_start = time.perf_counter()
    clock.run(clock.sleep(3600))
    assert time.perf_counter() - wall_start < 0.5


def test_an_hour_long_sleep_advances_virtual_now_by_exactly_one_hour() -> None:
    clock = VirtualClock(start=START)
    clock.run(clock.sleep(3600))
    assert clock.now() - START == timedelta(hours=1)
    assert clock.monotonic() == pytest.approx(3600.0, abs=1e-9)


def test_run_returns_the_coroutines_result() -> None:
    clock = VirtualClock(start=START)

    async def answer() -> int:
        await clock.sleep(1)
        return 42

    assert clock.run(answer()) == 42


def test_concurrent_sleeps_wake_in_the_order_of_their_deadlines_at_their_deadlines() -> None:
    clock = VirtualClock(start=START)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    async def main() -> None:
        await asyncio.gather(sleeper("c", 3.0), sleeper("a", 1.0), sleeper("d", 10.0), sleeper("b", 2.5))

    clock.run(main())
    assert [name for name, _ in woke] == ["a", "b", "c", "d"]
    assert [at for _, at in woke] == pytest.approx([1.0, 2.5, 3.0, 10.0], abs=1e-9)
    assert clock.now() - START == timedelta(seconds=10)


def test_a_two_second_timeout_around_a_ten_second_sleep_raises_timeout_error_at_virtual_two_seconds() -> None:
    clock = VirtualClock(start=START)

    async def main() -> float:
        with pytest.raises(TimeoutError):
            async with clock.timeout(2):
                await clock.sleep(10)
        return clock.monotonic()

    assert clock.run(main()) == pytest.approx(2.0, abs=1e-9)
    assert clock.now() - START == timedelta(seconds=2)


def test_a_timeout_that_is_not_reached_lets_the_work_finish() -> None:
    clock = VirtualClock(start=START)

    async def main() -> str:
        async with clock.timeout(2):
            await clock.sleep(1.5)
        return "done"

    assert clock.run(main()) == "done"
    assert clock.monotonic() == pytest.approx(1.5, abs=1e-9)


def test_virtual_time_continues_across_runs() -> None:
    clock = VirtualClock(start=START)
    clock.run(clock.sleep(60))
    clock.run(clock.sleep(60))
    assert clock.now() - START == timedelta(minutes=2)


def test_sleep_outside_run_advances_the_virtual_clock() -> None:
    clock = VirtualClock(start=START)
    asyncio.run(clock.sleep(5))
    assert clock.now() - START == timedelta(seconds=5)


def test_sleeps_ending_at_the_same_instant_wake_in_the_order_they_began() -> None:
    clock = VirtualClock(start=START)
    woke: list[str] = []

    async def sleeper(name: str) -> None:
        await clock.sleep(1.5)
        woke.append(name)

    async def main() -> None:
        await asyncio.gather(*(sleeper(name) for name in "hgfedcba"))

    clock.run(main())
    assert woke == list("hgfedcba")


def test_a_cancelled_sleep_ends_its_task_and_leaves_the_clock_where_the_others_take_it() -> None:
    clock = VirtualClock(start=START)

    async def main() -> tuple[bool, float]:
        long_sleeps = [asyncio.ensure_future(clock.sleep(100 + i)) for i in range(300)]
        await clock.sleep(1)
        for sleep in long_sleeps:
            sleep.cancel()
        await clock.sleep(2)
        return all(sleep.cancelled() for sleep in long_sleeps), clock.monotonic()

    cancelled, finished_at = clock.run(main())
    assert cancelled and finished_at == pytest.approx(3.0, abs=1e-9)
    assert clock.monotonic() == pytest.approx(3.0, abs=1e-9)  # never jumped to the cancelled sleeps' ends


# --- SystemClock.run -------------------------------------------------------------------------


async def _loop_module_and_deadline() -> tuple[str, bool, bool]:
    """The running loop's module, whether a 10 ms deadline cuts a 10 s sleep, and lets a quick one finish."""
    loop_module = type(asyncio.get_running_loop()).__module__
    clock = SystemClock()
    try:
        async with clock.timeout(0.01):
            await asyncio.sleep(10)
        cut = False
    except TimeoutError:
        cut = True
    async with clock.timeout(5):
        await asyncio.sleep(0)
    return loop_module, cut, True


def test_system_clock_runs_on_uvloop_when_installed_and_on_asyncios_loop_when_asked() -> None:
    module, cut, finished = SystemClock().run(_loop_module_and_deadline())
    assert module.startswith("uvloop") and cut and finished
    module, cut, finished = SystemClock(loop="asyncio").run(_loop_module_and_deadline())
    assert module.startswith("asyncio") and cut and finished
    assert repr(SystemClock(loop="asyncio")) == "SystemClock(loop='asyncio')"


def test_without_uvloop_auto_runs_on_asyncios_loop_and_asking_for_uvloop_is_refused(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as on an install without the api extra
    clock_module._loop_factory.cache_clear()
    try:
        module, cut, finished = SystemClock().run(_loop_module_and_deadline())
        assert module.startswith("asyncio") and cut and finished
        with pytest.raises(ValidationError) as caught:
            SystemClock(loop="uvloop")
        assert caught.value.code == "VALIDATION_ERROR"
    finally:
        clock_module._loop_factory.cache_clear()


def test_system_clock_refuses_an_unknown_loop_with_a_code() -> None:
    with pytest.raises(ValidationError) as caught:
        SystemClock(loop="trio")
    assert caught.value.code == "VALIDATION_ERROR"


# --- now() ----------------------------------------------------------------------------------


def test_system_clock_now_is_timezone_aware_utc() -> None:
    now = SystemClock().now()
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)


def test_virtual_clock_now_is_timezone_aware_utc_even_from_another_zone() -> None:
    plus_two = timezone(timedelta(hours=2))
    clock = VirtualClock(start=datetime(2026, 1, 1, 2, 0, tzinfo=plus_two))
    assert clock.now().utcoffset() == timedelta(0)
    assert clock.now() == START


def test_virtual_clock_starts_where_it_is_told() -> None:
    assert VirtualClock(start=utc(2026, 3, 15, 9, 30)).now() == datetime(2026, 3, 15, 9, 30, tzinfo=UTC)


def test_virtual_clock_refuses_a_naive_start() -> None:
    with pytest.raises(ValueError):
        VirtualClock(start=datetime(2026, 1, 1))


def test_virtual_clock_refuses_to_advance_backwards() -> None:
    clock = VirtualClock(start=START)
    with pytest.raises(ValueError):
        clock.advance(-1)
    assert clock.now() == START


def test_virtual_clock_advance_moves_now_and_monotonic_together() -> None:
    clock = VirtualClock(start=START)
    clock.advance(90.5)
    assert clock.now() - START == timedelta(seconds=90.5)
    assert clock.monotonic() == pytest.approx(90.5)


# --- nothing else reads the time or sleeps ------------------------------------------------------

FORBIDDEN_CALLS = ["time.time(", "time.sleep(", "datetime.now(", "datetime.utcnow(", "asyncio.sleep(",
                   "time.monotonic("]


def _package_sources_except_clock() -> list[Path]:
    files = sorted(p for p in PACKAGE_DIR.rglob("*.py") if p != PACKAGE_DIR / "clock.py")
    assert files, "no package sources found"
    return files


@pytest.mark.parametrize("call", FORBIDDEN_CALLS)
def test_no_module_other_than_clock_reads_the_time_or_sleeps_by_itself(call: str) -> None:
    offenders = [
        f"{path.relative_to(PACKAGE_DIR.parent)}:{number}"
        for path in _package_sources_except_clock()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if call in line
    ]
    assert offenders == [], f"{call} used outside clock.py: {offenders}"

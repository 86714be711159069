"""Cyclic garbage collection tuned for a process that mostly runs the gateway.

At Python's defaults (a young collection every 700 net allocations) a busy
gateway spends a quarter to a third of its time in the cycle collector: each
young collection scans the live objects of every request in flight, promotes
them, and the promoted ones soon trigger full collections, which also walk
every object the imports built (pandas, pyarrow, pydantic: hundreds of
thousands). Nearly all of the gateway's garbage is freed by reference
counting anyway, so the processes we start ourselves (``vbgateway serve``,
``simulate``, the benchmarks, which measure them) freeze what start-up built
and collect less often. A library user's own process is left alone unless
it asks.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["BATCH_GC", "SERVING_GC", "lean_gc", "tune_gc"]

# Young collections every 20,000 net allocations instead of 700 in both. A server
# defers full collections much further (each is a pause every request in flight
# waits for); batch work collects fully ten times as often, which keeps the
# cycles asyncio leaves behind from piling up (about 120 MB per 100,000 messages).
SERVING_GC = (20_000, 20, 100)
BATCH_GC = (20_000, 10, 10)


def tune_gc(thresholds: tuple[int, int, int] = BATCH_GC) -> None:
    """For the rest of the process: freeze what exists now and collect cycles less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


@contextmanager
def lean_gc() -> Iterator[None]:
    """``tune_gc`` for the duration of a block (a simulation inside a notebook), then the old settings."""
    old = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()

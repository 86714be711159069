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

__all__ = ["GC_THRESHOLDS", "lean_gc", "tune_gc"]

GC_THRESHOLDS = (20_000, 20, 100)  # young collections every 20,000 net allocations; full ones rarely


def tune_gc() -> None:
    """For the rest of the process: freeze what exists now and collect cycles less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


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

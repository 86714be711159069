"""Gateway throughput and memory, on a file database with zero-latency vendors.

Prints one line per figure as it is measured and, last, one JSON object:

    sequential_msgs_per_s   one sender, each reply durable before the next send  (target >= 400)
    concurrent_msgs_per_s   200 concurrent senders, commits grouped               (target >= 3000)
    fallback_msgs_per_s     VirtualClock, vendorA always failing: 3 tries + vendorB (target >= 1500)
    peak_rss_mb             peak resident memory of a process sending 100,000 messages (target <= 400)

Each figure is measured in a fresh child process so memory and caches do not
leak from one to the next; throughputs are the median of ``--repeats`` runs.
The child tunes the cycle collector as ``simulate`` does (``tune_gc()``, see
vbgateway/gc_tuning.py; ``vbgateway serve`` defers full collections further):
at Python's defaults a third of the fallback run is spent in full collections.
Usage: python benchmarks/bench_gateway.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vbgateway import Gateway, RetryPolicy, VirtualClock
from vbgateway.gc_tuning import tune_gc
from vbgateway.providers import VendorA, VendorB


def _providers(fail_a: bool) -> dict[str, object]:
    return {"vendorA": VendorA(latency_ms=(0, 0), failure_rate=1.0 if fail_a else 0.0, seed=1),
            "vendorB": VendorB(latency_ms=(0, 0), rate_limit_rate=0.0, seed=2)}


def _setup(gw: Gateway, sessions: int) -> tuple[object, list[str]]:
    _, key = gw.create_tenant("Bench Corp")
    client = gw.connect(key)
    agent = client.create_agent(name="Bench", primary_provider="vendorA", fallback_provider="vendorB",
                                system_prompt="You are a benchmark.")
    session_ids = [client.create_session(agent.id).id for _ in range(sessions)]
    gw.store.flush()  # warm-up: the first batch loads Arrow's conversion code (about a second, once)
    return client, session_ids


async def _send_all(client: object, session_ids: list[str], per_session: int, concurrency: int) -> None:
    async def sender(ids: list[str]) -> None:
        for _ in range(per_session):
            for session_id in ids:
                await client.send_message(session_id, "How do I update my billing address?")  # type: ignore[attr-defined]

    groups = [session_ids[i::concurrency] for i in range(concurrency)]
    await asyncio.gather(*(sender(g) for g in groups))


def measure(mode: str, messages: int, workdir: Path) -> dict[str, float]:
    """Run one measurement in this process; returns its figures."""
    db = workdir / f"{mode}.duckdb"
    for stale in workdir.glob(f"{mode}.duckdb*"):  # the file, its journal, lock file and handoff folder
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    if mode == "sequential":
        gw = Gateway.open(db, providers=_providers(False))
        concurrency, sessions = 1, 100
    elif mode == "concurrent":
        gw = Gateway.open(db, providers=_providers(False))
        concurrency, sessions = 200, 2000
    elif mode == "fallback":
        gw = Gateway.open(db, providers=_providers(True), clock=VirtualClock(), retry=RetryPolicy())
        concurrency, sessions = 200, 2000
    elif mode == "memory":
        gw = Gateway.open(db, providers=_providers(False))
        concurrency, sessions = 200, 10000
    else:
        raise SystemExit(f"unknown mode {mode}")
    client, session_ids = _setup(gw, sessions)
    per_session = max(1, messages // sessions)
    total = per_session * sessions
    started = time.perf_counter()
    gw.clock.run(_send_all(client, session_ids, per_session, concurrency))
    gw.close()  # everything applied to DuckDB is part of the cost
    elapsed = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"messages": total, "seconds": round(elapsed, 3), "msgs_per_s": round(total / elapsed, 1),
            "peak_rss_mb": round(peak_kb / 1024, 1)}


def _child(mode: str, messages: int, workdir: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(messages), str(workdir)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer messages, for a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per throughput figure (median reported)")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "MESSAGES", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, messages, workdir = args.child
        tune_gc()  # the process set-up `simulate` uses (vbgateway/gc_tuning.py)
        print(json.dumps(measure(mode, int(messages), Path(workdir))))
        return
    scale = 0.1 if args.quick else 1.0
    repeats = 1 if args.quick else args.repeats
    plan = {"sequential": 5_000, "concurrent": 40_000, "fallback": 20_000}
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="vb-bench-") as tmp:
        for mode, count in plan.items():
            rates = []
            for _ in range(repeats):  # this machine is shared: report the median of several runs
                result = _child(mode, max(200, int(count * scale)), Path(tmp))
                print(f"{mode:<11} {result}", flush=True)
                rates.append(result["msgs_per_s"])
            figures[f"{mode}_msgs_per_s"] = statistics.median(rates)
        result = _child("memory", max(1000, int(100_000 * scale)), Path(tmp))
        print(f"{'memory':<11} {result}", flush=True)
        figures["peak_rss_mb"] = result["peak_rss_mb"]
        figures["memory_run_msgs"] = result["messages"]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

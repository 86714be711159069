"""Gateway throughput and memory, on a file database with zero-latency vendors.

Prints one line per figure as it is measured and, last, one JSON object:

    sequential_msgs_per_s   one sender, each reply durable before the next send  (target >= 400)
    concurrent_msgs_per_s   200 concurrent senders, commits grouped               (target >= 3000)
    governed_concurrent_msgs_per_s  the same run with a budget, a rate limit and circuit breakers
                            configured, none of them triggered (asserted in the run)
    governed_ratio          governed / plain concurrent, runs alternating   (target >= 0.9)
    governed_cpu_ratio      the same from CPU time per message (plain / governed), steadier when loaded
    fallback_msgs_per_s     VirtualClock, vendorA always failing: 3 tries + vendorB (target >= 1500)
    budget_refusals_per_s   concurrent sends to a tenant whose budget cannot cover one reply, all
                            refused with BUDGET_EXCEEDED; asserted: no provider called, no reply
                            committed, refusal rows journaled in batches only (target >= 20000)
    peak_rss_mb             peak resident memory of a process sending 100,000 messages (target <= 400)

Each figure is measured in a fresh child process so memory and caches do not
leak from one to the next; throughputs are the median of ``--repeats`` runs.
The plain and governed concurrent runs alternate, so a change in the
machine's load strikes both alike.
The child tunes the cycle collector as ``simulate`` does (``tune_gc()``, see
vbgateway/gc_tuning.py; ``vbgateway serve`` defers full collections further):
at Python's defaults a third of the fallback run is spent in full collections.
Usage: python benchmarks/bench_gateway.py [--quick] [--repeats N] [--only MODE,...]
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
from vbgateway.errors import BudgetExceededError
from vbgateway.gc_tuning import tune_gc
from vbgateway.governance.breaker import BreakerPolicy
from vbgateway.governance.rate_limits import MAX_PER_MINUTE
from vbgateway.providers import VendorA, VendorB


def _providers(fail_a: bool) -> dict[str, object]:
    return {"vendorA": VendorA(latency_ms=(0, 0), failure_rate=1.0 if fail_a else 0.0, seed=1),
            "vendorB": VendorB(latency_ms=(0, 0), rate_limit_rate=0.0, seed=2)}


def _setup(gw: Gateway, sessions: int, budget_usd: str | None = None) -> tuple[object, list[str]]:
    tenant, key = gw.create_tenant("Bench Corp")
    if budget_usd is not None:  # governed: limits far above what the run can reach
        gw.set_budget(tenant.id, budget_usd)
        gw.set_rate_limit(tenant.id, requests_per_minute=MAX_PER_MINUTE, tokens_per_minute=MAX_PER_MINUTE)
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


async def _refuse_all(client: object, session_ids: list[str], per_session: int, concurrency: int) -> int:
    """Like ``_send_all``, each send expected to be refused; returns the refusals."""
    refused = 0

    async def sender(ids: list[str]) -> None:
        nonlocal refused
        for _ in range(per_session):
            for session_id in ids:
                try:
                    await client.send_message(session_id, "How do I update my billing address?")  # type: ignore[attr-defined]
                except BudgetExceededError:
                    refused += 1

    groups = [session_ids[i::concurrency] for i in range(concurrency)]
    await asyncio.gather(*(sender(g) for g in groups))
    return refused


class _CommitCounter:
    """Counts the store's journal records, synchronous (refusal batches) and grouped (replies) apart."""

    def __init__(self, gw: Gateway) -> None:
        self.sync = self.grouped = 0
        store, commit, commit_async = gw.store, gw.store.commit, gw.store.commit_async

        def counted(rows: object) -> None:
            self.sync += 1
            commit(rows)  # type: ignore[arg-type]

        async def counted_async(rows: object) -> None:
            self.grouped += 1
            await commit_async(rows)  # type: ignore[arg-type]

        store.commit, store.commit_async = counted, counted_async  # type: ignore[method-assign]


def _measure_refusals(db: Path, messages: int) -> dict[str, float]:
    """A burst past the budget: every send refused before any provider or reply write."""
    providers = _providers(False)
    gw = Gateway.open(db, providers=providers)
    client, session_ids = _setup(gw, 200, budget_usd="0.0000001")  # less than any one reply can cost
    counter = _CommitCounter(gw)
    calls_before = [p.calls for p in providers.values()]  # type: ignore[attr-defined]
    per_session = max(1, messages // len(session_ids))
    total = per_session * len(session_ids)
    started, cpu_started = time.perf_counter(), time.process_time()
    refused = gw.clock.run(_refuse_all(client, session_ids, per_session, 200))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    calls_after = [p.calls for p in providers.values()]  # type: ignore[attr-defined]
    batches = counter.sync
    assert refused == total == gw.refusals.recorded, (refused, total, gw.refusals.recorded)
    assert calls_after == calls_before, f"a refusal called a provider: {calls_before} -> {calls_after}"
    assert counter.grouped == 0, f"{counter.grouped} replies were committed during the burst"
    assert batches <= -(-total // 256), f"{batches} journal records for {total} refusals"
    gw.close()
    return {"messages": total, "seconds": round(elapsed, 3), "msgs_per_s": round(total / elapsed, 1),
            "cpu_us_per_msg": round(cpu / total * 1e6, 1), "refusal_journal_records": batches}


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
    elif mode == "governed":  # as "concurrent", with every governance feature configured, none triggered
        gw = Gateway.open(db, providers=_providers(False), breaker=BreakerPolicy())
        concurrency, sessions = 200, 2000
    elif mode == "refusals":
        return _measure_refusals(db, messages)
    else:
        raise SystemExit(f"unknown mode {mode}")
    client, session_ids = _setup(gw, sessions, budget_usd="1000000" if mode == "governed" else None)
    per_session = max(1, messages // sessions)
    total = per_session * sessions
    started, cpu_started = time.perf_counter(), time.process_time()
    gw.clock.run(_send_all(client, session_ids, per_session, concurrency))
    if mode == "governed":  # the figure is the untriggered path: nothing refused, every circuit closed
        assert gw.refusals.recorded == 0, f"{gw.refusals.recorded} requests refused"
        assert all(s.state == "closed" for s in gw.breaker_states().values()), gw.breaker_states()
        assert gw.breaker_states(), "no breakers configured"
    gw.close()  # everything applied to DuckDB is part of the cost
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"messages": total, "seconds": round(elapsed, 3), "msgs_per_s": round(total / elapsed, 1),
            "cpu_us_per_msg": round(cpu / total * 1e6, 1), "peak_rss_mb": round(peak_kb / 1024, 1)}


def _child(mode: str, messages: int, workdir: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(messages), str(workdir)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer messages, for a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per throughput figure (median reported)")
    parser.add_argument("--only", default="", help="comma-separated figures to measure (default: all): "
                        "sequential, concurrent (with governed), fallback, refusals, memory")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "MESSAGES", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, messages, workdir = args.child
        tune_gc()  # the process set-up `simulate` uses (vbgateway/gc_tuning.py)
        print(json.dumps(measure(mode, int(messages), Path(workdir))))
        return
    scale = 0.1 if args.quick else 1.0
    repeats = 1 if args.quick else args.repeats
    only = set(filter(None, args.only.split(",")))
    # Each entry is measured in turns: "concurrent" and "governed" alternate within every repeat.
    plan = {"sequential": (("sequential", 5_000),), "concurrent": (("concurrent", 40_000), ("governed", 40_000)),
            "fallback": (("fallback", 20_000),), "refusals": (("refusals", 40_000),)}
    unknown = only - {*plan, "governed", "memory"}
    if unknown:
        raise SystemExit(f"unknown figures: {', '.join(sorted(unknown))}")
    if "governed" in only:
        only.add("concurrent")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="vb-bench-") as tmp:
        for name, turns in plan.items():
            if only and name not in only:
                continue
            rates: dict[str, list[float]] = {mode: [] for mode, _ in turns}
            cpu: dict[str, list[float]] = {mode: [] for mode, _ in turns}
            for _ in range(repeats):  # this machine is shared: report the median of several runs
                for mode, count in turns:
                    result = _child(mode, max(200, int(count * scale)), Path(tmp))
                    print(f"{mode:<11} {result}", flush=True)
                    rates[mode].append(result["msgs_per_s"])
                    cpu[mode].append(result.get("cpu_us_per_msg", 0.0))
            for mode, measured in rates.items():
                label = {"governed": "governed_concurrent_msgs_per_s",
                         "refusals": "budget_refusals_per_s"}.get(mode, f"{mode}_msgs_per_s")
                figures[label] = statistics.median(measured)
            if "governed" in rates:
                ratios = [g / c for c, g in zip(rates["concurrent"], rates["governed"], strict=True)]
                figures["governed_ratio"] = round(statistics.median(ratios), 3)
                # CPU per message (every thread of the child): steadier than wall time on a loaded machine
                figures["governed_cpu_ratio"] = round(statistics.median(cpu["concurrent"]) /
                                                      statistics.median(cpu["governed"]), 3)
        if not only or "memory" in only:
            result = _child("memory", max(1000, int(100_000 * scale)), Path(tmp))
            print(f"{'memory':<11} {result}", flush=True)
            figures["peak_rss_mb"] = result["peak_rss_mb"]
            figures["memory_run_msgs"] = result["messages"]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

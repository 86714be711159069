"""Analytics, report and export speed on a large synthetic database.

Prints one line per figure as it is measured and, last, one JSON object:

    arrow_rows_per_s        building synthetic usage rows as Arrow, no database       (no target)
    setup_s                 creating the tenants and their agents through the gateway (no target)
    generator_rows_per_s    usage + attempt rows built and bulk-inserted into a file  (target >= 1,000,000)
    rollup_ms               one tenant, one month, computed (from the daily aggregates) (target <= 50)
    rollup_kept_ms          the same, asked again: the answer kept until the next write
    monthly_ms              one tenant, last 12 months by provider                    (target <= 100)
    all_tenants_rollup_ms   every tenant, one month                                   (target <= 500)
    forecast_ms             month-end spend forecast of every tenant, mid-month       (target <= 500)
    fit_s                   fit_scenario over a simulated month of --fit-messages customer messages
                            (bench_simulation.py's month; the synthetic events have no sessions
                            or messages to fit)                                       (target <= 10 at 1,000,000)
    report_usage_s          `vbgateway report usage`, kernel start included,
                            one tenant with --events/10 events over a year            (target <= 15)
    export_rows_per_s       `vbgateway export` of every usage event                   (target >= 1,000,000)
    http_rollup_rps         GET /v1/usage/rollup at 50 clients over `vbgateway serve`: every tenant's
                            key asking this month, the last 30 days, the last quarter and all
                            time, as dashboards do                                    (target >= 1,000)
    http_rollup_p95_ms      95th percentile latency of those requests, client side    (target <= 100)
    http_rollup_cold_rps    the same load with every request a range not asked before
                            (each one computed from the daily aggregates)             (no target)

The database holds --events usage events (default 10,000,000) across --tenants
tenants (default 100); the first tenant has a tenth of them, the rest share
the remainder, over the calendar year 2025. Query figures are medians.

The generator figures time ``generate`` alone: the tenants and agents it writes
for are made first by ``create_tenants`` and timed apart as ``setup_s``. Each of
them is a durable commit through the gateway (0.7-2 s for 100 tenants), a cost
that does not grow with the number of events and says nothing about the rows/s
of the generator.

The HTTP figures load a `vbgateway serve` process from this one (50 keep-alive
connections on loopback, each sending its next request as soon as the last
answer arrived; ``bench_api.py``'s client loop).

Usage: python benchmarks/bench_analytics.py [--events N] [--tenants N] [--keep DIR] [--only http]
       [--http-seconds S]
(without --keep, the database and its outputs are deleted at the end)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_api import _client, _free_port, _wait_for  # the HTTP client loop, shared

from vbgateway import Gateway, VirtualClock, analytics
from vbgateway.export import export_usage
from vbgateway.synthetic import SyntheticSpec, create_tenants, generate, month_batches


def median_ms(fn, repeats: int = 7) -> float:
    fn()  # warm caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 1)


def build(db: Path, spec: SyntheticSpec, report: Callable[[str, float], None]) -> None:
    """Write the database: tenants and agents first (``setup_s``), then the generator, timed alone."""
    with Gateway.open(db, clock=VirtualClock()) as gw:
        start = time.perf_counter()
        tenant_ids, agent_ids = create_tenants(gw, spec)
        setup = time.perf_counter() - start
        start = time.perf_counter()
        result = generate(gw, spec, tenant_ids, agent_ids)
        elapsed = time.perf_counter() - start
    report("setup_s", round(setup, 2))
    report("usage_rows", result.usage_rows)
    report("generator_rows_per_s", round((result.usage_rows + result.attempt_rows) / elapsed))
    report("generator_usage_rows_per_s", round(result.usage_rows / elapsed))


def query_figures(db: Path, report: Callable[[str, float], None]) -> tuple[str, int]:
    """The query figures on a read-only gateway; returns the heaviest tenant and its event count."""
    with Gateway.open_reader(db) as gw:
        heavy = gw.list_tenants()[0].id
        june = ("2025-06-01", "2025-06-30")

        kept = getattr(gw.store, "answers", None)  # (older versions kept no answers: the same script measures them)

        def uncached(fn: Callable[[], object]) -> Callable[[], object]:
            """Every call computed: the answers a store keeps until its next write are dropped first."""
            return lambda: (kept.clear() if kept is not None else None, fn())

        report("rollup_ms", median_ms(uncached(lambda: analytics.rollup(gw, heavy, *june))))
        report("rollup_kept_ms", median_ms(lambda: analytics.rollup(gw, heavy, *june)))
        report("monthly_ms", median_ms(lambda: analytics.monthly(gw, heavy, now=datetime(2025, 12, 31, tzinfo=UTC))))
        report("all_tenants_rollup_ms", median_ms(lambda: analytics.rollup(gw, None, *june), repeats=5))
        report("all_tenants_year_rollup_ms",
               median_ms(lambda: analytics.rollup(gw, None, "2025-01-01", "2025-12-31"), repeats=3))
        if hasattr(analytics, "month_end_forecasts"):
            mid_june = datetime(2025, 6, 14, 15, tzinfo=UTC)
            report("forecast_ms", median_ms(lambda: analytics.month_end_forecasts(gw, as_of=mid_june), repeats=5))
        heavy_events = int(gw.sql("SELECT count(*) AS n FROM usage_events WHERE tenant_id = ?", [heavy]).n[0])
    return heavy, heavy_events


def fit_figures(work: Path, messages: int, report: Callable[[str, float], None]) -> None:
    """Simulate a month once (kept in ``work``), then time ``fit_scenario`` over it."""
    from bench_simulation import month

    from vbgateway.simulation import simulate
    from vbgateway.simulation.fit import fit_scenario

    scenario = month(messages)
    db = work / f"fit-month-{messages}.duckdb"
    if not db.exists():
        start = time.perf_counter()
        simulate(scenario, db=db)
        report("fit_month_simulated_s", round(time.perf_counter() - start, 1))
    with Gateway.open_reader(db) as gw:
        report("fit_replies", int(gw.sql("SELECT count(*) AS n FROM usage_events").n[0]))
        start = time.perf_counter()
        fitted = fit_scenario(gw, scenario.start, scenario.stop)
        report("fit_s", round(time.perf_counter() - start, 2))
    report("fit_incidents", len(fitted.incidents))


def rollup_requests(keys: list[str], last: date, *, cold: bool, count: int = 4000) -> list[bytes]:
    """GET /v1/usage/rollup requests: dashboard periods of every tenant, or (``cold``) ranges never repeated."""
    def get(key: str, first: date, end: date) -> bytes:
        return (f"GET /v1/usage/rollup?from={first}&to={end} HTTP/1.1\r\nHost: bench\r\n"
                f"X-API-Key: {key}\r\n\r\n").encode()

    if not cold:
        periods = [(last.replace(day=1), last), (last - timedelta(days=29), last), (last - timedelta(days=91), last),
                   (date(2000, 1, 1), last)]
        return [get(key, *period) for period in periods for key in keys]
    rng = random.Random(7)
    pairs = sorted({(rng.randrange(365), rng.randrange(1, 120)) for _ in range(count * 2)})
    rng.shuffle(pairs)
    return [get(keys[i % len(keys)], last - timedelta(days=a + b), last - timedelta(days=a))
            for i, (a, b) in enumerate(pairs[:count])]


def http_load(port: int, requests: list[bytes], clients: int, seconds: float, warmup: float, *,
              first_pass: bool) -> dict[str, float]:
    """A closed loop of ``clients`` connections over ``requests`` (each client its own share, in turn).

    ``first_pass``: every request is sent once before the clock starts, as a fleet of dashboards
    that has been running for a while has asked each of its questions before.
    """
    latencies: list[float] = []
    errors: list[int] = []

    async def run() -> None:
        shares = [requests[c::clients] or requests for c in range(clients)]
        if first_pass:
            await asyncio.gather(*(_client(port, part, time.perf_counter() + 600, float("inf"), [], [], once=True)
                                   for part in shares))
        now = time.perf_counter()
        await asyncio.gather(*(_client(port, part, now + warmup + seconds, now + warmup, latencies, errors)
                               for part in shares))

    asyncio.run(run())
    latencies.sort()
    n = len(latencies)
    return {"rps": round(n / seconds, 1), "p95_ms": round(1000 * latencies[min(n - 1, int(n * 0.95))], 1) if n else -1,
            "errors": len(errors)}


def http_figures(db: Path, report: Callable[[str, float], None], seconds: float) -> None:
    """``vbgateway serve`` over the database; rollups from this process, dashboard periods then cold ranges."""
    with Gateway.open(db, clock=VirtualClock()) as gw:
        keys = [gw.create_api_key(t.id)[1] for t in gw.list_tenants()]
        last = gw.store.query_rows("SELECT max(created_at) FROM usage_events")[0][0].date()
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "vbgateway.cli", "serve", "--db", str(db), "--port", str(port),
                               "--log-level", "warning"])
    try:
        _wait_for(port, server, timeout=600)
        warm = http_load(port, rollup_requests(keys, last, cold=False), 50, seconds, 1.0, first_pass=True)
        report("http_rollup_rps", warm["rps"])
        report("http_rollup_p95_ms", warm["p95_ms"])
        cold = http_load(port, rollup_requests(keys, last, cold=True), 50, seconds, 1.0, first_pass=False)
        report("http_rollup_cold_rps", cold["rps"])
        report("http_rollup_cold_p95_ms", cold["p95_ms"])
        report("http_rollup_errors", warm["errors"] + cold["errors"])
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--keep", help="build (or reuse) the database in this folder")
    parser.add_argument("--fit-messages", type=int, default=1_000_000,
                        help="customer messages in the simulated month fit_s fits (default 1,000,000)")
    parser.add_argument("--only", choices=["http", "queries", "fit"],
                        help="build the database if need be, then only these figures")
    parser.add_argument("--http-seconds", type=float, default=8.0, help="measured seconds per HTTP figure")
    args = parser.parse_args()
    figures: dict[str, float] = {}

    def report(name: str, value: float) -> None:
        figures[name] = value
        print(f"{name}: {value:,}", flush=True)

    work = Path(args.keep or tempfile.mkdtemp(prefix="vb-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "bench.duckdb"
    weights = [args.tenants - 1.0] + [(args.tenants - 1.0) * 9 / (args.tenants - 1)] * (args.tenants - 1)
    spec = SyntheticSpec(events=args.events, tenants=args.tenants, start=date(2025, 1, 1), end=date(2025, 12, 31),
                         weights=weights, seed=1)

    if args.only is not None:
        if not db.exists() and args.only != "fit":
            build(db, spec, report)
        if args.only == "queries":
            query_figures(db, report)
        elif args.only == "fit":
            fit_figures(work, args.fit_messages, report)
        else:
            http_figures(db, report, args.http_seconds)
        print(json.dumps(figures))
        return

    probe = SyntheticSpec(events=1_000_000, tenants=10, agents_per_tenant=1, attempts=False)
    start = time.perf_counter()
    rows = sum(u.num_rows for u, *_ in month_batches(probe, [f"t{i}" for i in range(10)], [["a"]] * 10,
                                                     {"vendorA": Decimal("0.002"), "vendorB": Decimal("0.003")}))
    report("arrow_rows_per_s", round(rows / (time.perf_counter() - start)))

    if not db.exists():
        build(db, spec, report)

    heavy, heavy_events = query_figures(db, report)
    report("report_tenant_events", heavy_events)

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vbgateway.cli", "report", "usage", "--db", str(db), "--tenant", heavy,
                    "--from", "2025-01-01", "--to", "2025-12-31", "--out", str(work / "reports"), "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    report("report_usage_s", round(time.perf_counter() - start, 2))

    start = time.perf_counter()
    exported = export_usage(db, work / "lake")
    report("export_rows_per_s", round(exported.rows / (time.perf_counter() - start)))
    http_figures(db, report, args.http_seconds)
    fit_figures(work, args.fit_messages, report)
    print(json.dumps(figures))
    if not args.keep:  # a database, a report and an export: gigabytes per run
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Analytics, report and export speed on a large synthetic database.

Prints one line per figure as it is measured and, last, one JSON object:

    arrow_rows_per_s        building synthetic usage rows as Arrow, no database       (no target)
    setup_s                 creating the tenants and their agents through the gateway (no target)
    generator_rows_per_s    usage + attempt rows built and bulk-inserted into a file  (target >= 1,000,000)
    rollup_ms               one tenant, one month                                     (target <= 50)
    monthly_ms              one tenant, last 12 months by provider                    (target <= 100)
    all_tenants_rollup_ms   every tenant, one month                                   (target <= 500)
    report_usage_s          `vbgateway report usage`, kernel start included,
                            one tenant with --events/10 events over a year            (target <= 15)
    export_rows_per_s       `vbgateway export` of every usage event                   (target >= 1,000,000)

The database holds --events usage events (default 10,000,000) across --tenants
tenants (default 100); the first tenant has a tenth of them, the rest share
the remainder, over the calendar year 2025. Query figures are medians.

The generator figures time ``generate`` alone: the tenants and agents it writes
for are made first by ``create_tenants`` and timed apart as ``setup_s``. Each of
them is a durable commit through the gateway (0.7-2 s for 100 tenants), a cost
that does not grow with the number of events and says nothing about the rows/s
of the generator.

Usage: python benchmarks/bench_analytics.py [--events N] [--tenants N] [--keep DIR]
(without --keep, the database and its outputs are deleted at the end)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--keep", help="build (or reuse) the database in this folder")
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

    probe = SyntheticSpec(events=1_000_000, tenants=10, agents_per_tenant=1, attempts=False)
    start = time.perf_counter()
    rows = sum(u.num_rows for u, *_ in month_batches(probe, [f"t{i}" for i in range(10)], [["a"]] * 10,
                                                     {"vendorA": Decimal("0.002"), "vendorB": Decimal("0.003")}))
    report("arrow_rows_per_s", round(rows / (time.perf_counter() - start)))

    if not db.exists():
        build(db, spec, report)

    with Gateway.open_reader(db) as gw:
        heavy = gw.list_tenants()[0].id
        june = ("2025-06-01", "2025-06-30")
        report("rollup_ms", median_ms(lambda: analytics.rollup(gw, heavy, *june)))
        report("monthly_ms", median_ms(lambda: analytics.monthly(gw, heavy, now=datetime(2025, 12, 31, tzinfo=UTC))))
        report("all_tenants_rollup_ms", median_ms(lambda: analytics.rollup(gw, None, *june), repeats=5))
        report("all_tenants_year_rollup_ms",
               median_ms(lambda: analytics.rollup(gw, None, "2025-01-01", "2025-12-31"), repeats=3))
        heavy_events = int(gw.sql("SELECT count(*) AS n FROM usage_events WHERE tenant_id = ?", [heavy]).n[0])
    report("report_tenant_events", heavy_events)

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vbgateway.cli", "report", "usage", "--db", str(db), "--tenant", heavy,
                    "--from", "2025-01-01", "--to", "2025-12-31", "--out", str(work / "reports"), "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    report("report_usage_s", round(time.perf_counter() - start, 2))

    start = time.perf_counter()
    exported = export_usage(db, work / "lake")
    report("export_rows_per_s", round(exported.rows / (time.perf_counter() - start)))
    print(json.dumps(figures))
    if not args.keep:  # a database, a report and an export: gigabytes per run
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""``vbgateway simulate SCENARIO --db data/sim.duckdb``: run a scenario, print its summary.

SCENARIO is a YAML/JSON file or the name of an example shipped with the
package (``vbgateway simulate normal_week``).

A tqdm bar follows simulated time (and counts messages) so a month-long run
shows where it is; the per-message rows and the summary can be written next
to the database for notebooks (``--save``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["DEFAULT_SIM_DB", "register"]

DEFAULT_SIM_DB = "data/sim.duckdb"


def _bar(total_s: float, quiet: bool):  # type: ignore[no-untyped-def]
    """A progress callback showing simulated hours, and the bar to close."""
    from tqdm import tqdm

    bar = tqdm(total=round(total_s / 3600, 2), unit="sim h", disable=quiet, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} simulated h [{elapsed}<{remaining}]{postfix}")

    def update(done_s: float, messages: int) -> None:
        bar.n = round(min(done_s, total_s) / 3600, 2)
        bar.set_postfix_str(f"{messages:,} messages", refresh=False)
        bar.update(0)  # redrawn at most every tqdm mininterval: refresh() would draw every call (a log line each)

    return update, bar


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _simulate(args: argparse.Namespace) -> int:
    from ..errors import ValidationError
    from ..simulation import load_scenario, simulate

    if args.lake_only and not args.lake:
        raise ValidationError("--lake-only needs --lake URL")
    if (args.stage or args.lake) and args.dask is None:
        raise ValidationError("--stage and --lake are where cluster workers write: give --dask too (local:N for "
                              "this machine)")
    scenario = load_scenario(args.scenario)
    if args.seed is not None:
        scenario = scenario.model_copy(update={"seed": args.seed})
    db = Path(args.db)
    if args.fresh:
        for stale in (db, Path(f"{db}.wal"), Path(f"{db}.journal")):
            stale.unlink(missing_ok=True)
    if args.dask is not None:
        from ..simulation.cluster import simulate_with_cli

        result = simulate_with_cli(scenario, db, args.dask, stage=args.stage, lake=args.lake, lake_only=args.lake_only,
                                   quiet=args.quiet)
    else:
        update, bar = _bar(scenario.duration.total_seconds(), args.quiet)
        try:
            result = simulate(scenario, db, progress=update, workers=args.workers)
        finally:
            bar.close()
    summary = result.summary()
    if args.save:
        rows_path, summary_path = result.save(db.with_suffix(""))
        summary["rows_file"], summary["summary_file"] = str(rows_path), str(summary_path)
    if args.json:
        print(json.dumps(summary, default=str))
        return 0
    print(f"{scenario.name}: {summary['messages']:,} messages, {summary['replies']:,} replies "
          f"({summary['success_rate'] or 0:.2%} success, {summary['fallback_rate'] or 0:.2%} via fallback), "
          f"{summary['attempts_per_reply'] or 0:.2f} tries per reply")
    print(f"latency p50/p95/p99: {summary['latency_p50_ms'] or 0:.0f} / {summary['latency_p95_ms'] or 0:.0f} / "
          f"{summary['latency_p99_ms'] or 0:.0f} ms; cost ${summary['cost_usd']:.4f} "
          f"(${summary['cost_per_1k_replies_usd'] or 0:.4f} per 1,000 replies)")
    print(result.vendor_load().to_string(index=False))
    print(f"{summary['sim_msgs_per_wall_s']:,} messages/s, {summary['virtual_s_per_wall_s']:,} simulated s per s; "
          f"database: {db}{' (tenants and agents; rows in the lake only)' if args.lake_only else ''}"
          + (f"; lake: {args.lake}" if args.lake else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("simulate", help="run a simulation scenario (YAML/JSON) through the gateway on virtual time")
    from ..simulation.examples import example_names

    parser.add_argument("scenario", help=f"a scenario file (YAML/JSON) or an example's name: {', '.join(example_names())}")
    parser.add_argument("--db", default=DEFAULT_SIM_DB, help=f"database to write (default {DEFAULT_SIM_DB})")
    parser.add_argument("--fresh", action="store_true", help="delete the database first")
    parser.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    parser.add_argument("--save", action="store_true", help="also write <db>.messages.parquet and <db>.summary.json")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--workers", type=_positive, default=None,
                        help="processes for the scenario's gateway instances (default: one per core on large runs; "
                             "the result is the same whatever the number)")
    parser.add_argument("--dask", metavar="ADDRESS", default=None,
                        help="run the gateway instances as tasks on a Dask cluster: a scheduler address "
                             "(tcp://host:8786) or local:N (N worker processes here); same result as a local run")
    parser.add_argument("--stage", metavar="URL", default=None,
                        help="with --dask: workers hand their rows back as Parquet under this shared folder or "
                             "fsspec URL (s3://... with s3fs) instead of through the scheduler")
    parser.add_argument("--lake", metavar="URL", default=None,
                        help="with --dask: workers also write the rows as Hive-partitioned Parquet "
                             "(<table>/tenant_id=/month=) here; reports read it like a database")
    parser.add_argument("--lake-only", action="store_true",
                        help="with --lake: the rows go to the lake alone; --db keeps the tenants and agents (so the "
                             "runs of a year, month by month, bill the same tenants)")
    parser.set_defaults(func=_simulate)

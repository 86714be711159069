"""Simulation throughput and memory: a month of traffic, everything persisted to a DuckDB file.

Prints one line per figure and, last, one JSON object:

    sim_msgs_per_wall_s    customer messages simulated per wall second, DuckDB file included (target >= 10,000)
    virtual_s_per_wall_s   simulated seconds per wall second
    peak_rss_mb            peak resident memory of the run: its process plus, when gateway instances ran
                           in processes of their own, the sum of their peaks (target <= 1500 at 1,000,000 messages)
    messages               how many messages the run had (default about 1,000,000; --quick about 100,000)

The scenario is a 30-day month for 20 tenants with the contract's vendor
defaults (vendorA ~10% HTTP 500, vendorB ~5% 429), 10% voice, 2% client
retries and a 90-minute vendorA outage; its busy-hour rate is solved so
the month holds the requested number of messages. It runs in a child
process so peak memory is the run's own. The scenario's two gateway
instances run in a process each on a machine with two or more cores
(``workers``); the result is identical to running them one after another.
With ``--dask local:N`` (or a scheduler address) the same month also runs
with its instances as Dask tasks, after the local run and in the same
invocation, first on N workers and then on one (a local cluster of that
many worker processes, started before the clock starts: a cluster one
points at is already running; its start is reported apart):

    dask_msgs_per_wall_s        messages per wall second on N workers (target >= 0.85x sim_msgs_per_wall_s)
    dask_vs_local               dask_msgs_per_wall_s / sim_msgs_per_wall_s
    dask_msgs_per_worker_s      dask_msgs_per_wall_s / N: what one worker adds
    dask_1_worker_msgs_per_wall_s  the same month on one worker
    scaling_efficiency          dask_msgs_per_wall_s / (N x dask_1_worker_msgs_per_wall_s)
    worker_peak_rss_mb          the largest peak resident memory of a worker process (target <= 1000)
    dask_cluster_start_s        starting the local cluster (not in the figures above)

Usage: python benchmarks/bench_simulation.py [--quick] [--messages N] [--one-instance DAYS] [--dask local:2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from vbgateway.simulation import Scenario, simulate
from vbgateway.simulation.instances import workers_for

TENANTS = 20
MEAN_MESSAGES = 4.0


def month(messages: int) -> Scenario:
    base = Scenario.parse({
        "name": "bench-month", "start": "2026-03-01T00:00:00Z", "duration": "30d", "seed": 99, "tenants": TENANTS,
        "incidents": [{"vendor": "vendorA", "kind": "outage", "start": "P9DT14H", "end": "P9DT15H30M"}]})
    profile = base.traffic.daily_profile
    weight = sum(profile.factor(base.start + timedelta(hours=h)) for h in range(30 * 24))
    rate = messages / (TENANTS * weight * MEAN_MESSAGES)
    return base.model_copy(update={"traffic": base.traffic.model_copy(update={"sessions_per_hour": rate})})


def child(messages: int, workdir: Path) -> dict[str, float]:
    scenario = month(messages)
    started = time.perf_counter()
    result = simulate(scenario, workdir / "bench.duckdb")
    wall = time.perf_counter() - started
    summary = result.summary()
    return {"messages": summary["messages"], "wall_s": round(wall, 2),
            "sim_msgs_per_wall_s": round(summary["messages"] / wall, 1),
            "virtual_s_per_wall_s": round(result.virtual_s / wall, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + result.worker_peak_rss_mb, 1),
            "instance_processes_rss_mb": result.worker_peak_rss_mb,
            "workers": workers_for(scenario, None), "gateways": scenario.gateways,
            "success_rate": round(summary["success_rate"], 5), "fallback_rate": round(summary["fallback_rate"], 5),
            "db_mb": round((workdir / "bench.duckdb").stat().st_size / 1e6, 1)}


def dask_child(messages: int, workdir: Path, cluster: str) -> dict[str, float]:
    """The month with its instances as Dask tasks on ``cluster`` (``local:N`` is started before timing)."""
    from vbgateway.simulation.cluster import cluster_client, local_workers

    scenario = month(messages)
    started = time.perf_counter()
    with cluster_client(cluster) as client:
        start_s = time.perf_counter() - started
        workers = local_workers(cluster) or len(client.scheduler_info()["workers"])
        started = time.perf_counter()
        result = simulate(scenario, workdir / f"dask-{workers}.duckdb", cluster=client)
        wall = time.perf_counter() - started
    assert result.cluster is not None
    return {"messages": result.summary()["messages"], "wall_s": round(wall, 2), "workers": workers,
            "msgs_per_wall_s": round(result.summary()["messages"] / wall, 1), "cluster_start_s": round(start_s, 2),
            "worker_peak_rss_mb": max(result.cluster["worker_peak_rss_mb"].values()),
            "database_digest": result.database_digest or ""}


def _dask_figures(messages: int, cluster: str, local: dict[str, float]) -> dict[str, float]:
    """The Dask runs on N workers and on one, each in a child process, as figures beside the local run's."""
    from vbgateway.simulation.cluster import local_workers

    runs = {}
    one = "local:1" if local_workers(cluster) is not None else cluster  # a remote cluster: its own size only
    for name, target in (("n", cluster), ("one", one)):
        if name == "one" and target == runs["n"]["cluster"]:
            break
        with tempfile.TemporaryDirectory(prefix="vb-simbench-") as tmp:
            out = subprocess.run([sys.executable, __file__, "--dask-child", str(messages), tmp, target],
                                 check=True, capture_output=True, text=True)
        runs[name] = {**json.loads(out.stdout.strip().splitlines()[-1]), "cluster": target}
    n = runs["n"]
    figures = {"dask_cluster": cluster, "dask_workers": n["workers"], "dask_msgs_per_wall_s": n["msgs_per_wall_s"],
               "dask_vs_local": round(n["msgs_per_wall_s"] / local["sim_msgs_per_wall_s"], 3),
               "dask_msgs_per_worker_s": round(n["msgs_per_wall_s"] / n["workers"], 1),
               "worker_peak_rss_mb": n["worker_peak_rss_mb"], "dask_cluster_start_s": n["cluster_start_s"]}
    if "one" in runs:
        figures["dask_1_worker_msgs_per_wall_s"] = runs["one"]["msgs_per_wall_s"]
        figures["scaling_efficiency"] = round(n["msgs_per_wall_s"] / (n["workers"] * runs["one"]["msgs_per_wall_s"]), 3)
        figures["dask_same_digest"] = runs["one"]["database_digest"] == n["database_digest"]
    return figures


def one_instance(days: float, workdir: Path) -> dict[str, float]:
    """Instance 0 of the month's first ``days``, in this process: the CPU one instance spends per message.

    For profilers that follow one process (py-spy, ``valgrind --tool=callgrind``):
    run it for two lengths and divide the difference by the difference in messages.
    """
    from vbgateway.simulation import runner
    from vbgateway.simulation.instances import InstanceSpec

    scenario = month(1_000_000).model_copy(update={"duration": timedelta(days=days)})
    target = runner.open_target(workdir / "target.duckdb", scenario.start)
    run_number, _, control = runner.prepare_target(target, scenario)
    target.close()
    spec = InstanceSpec(scenario, 0, run_number, str(workdir / "gateway-0.duckdb"), control,
                        runner.DEFAULT_COMMIT_WINDOW_S, runner.DEFAULT_FLUSH_RECORDS, False)
    started = time.process_time()
    messages = len(runner.run_instance(spec, None, duckdb_threads=1).recorder)
    cpu = time.process_time() - started
    return {"messages": messages, "cpu_s": round(cpu, 2), "cpu_us_per_msg": round(cpu / max(messages, 1) * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="about 100,000 messages instead of 1,000,000")
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--one-instance", type=float, metavar="DAYS",
                        help="only instance 0 of the month's first DAYS days, in this process (for profilers)")
    parser.add_argument("--dask", metavar="CLUSTER", default=None,
                        help="also run the month as Dask tasks: local:N (N worker processes) or a scheduler address")
    parser.add_argument("--child", nargs=2, metavar=("MESSAGES", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--dask-child", nargs=3, metavar=("MESSAGES", "DIR", "CLUSTER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), Path(args.child[1]))))
        return
    if args.dask_child:
        print(json.dumps(dask_child(int(args.dask_child[0]), Path(args.dask_child[1]), args.dask_child[2])))
        return
    if args.one_instance is not None:
        with tempfile.TemporaryDirectory(prefix="vb-simbench-") as tmp:
            print(json.dumps(one_instance(args.one_instance, Path(tmp))))
        return
    messages = args.messages or (100_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="vb-simbench-") as tmp:
        out = subprocess.run([sys.executable, __file__, "--child", str(messages), tmp],
                             check=True, capture_output=True, text=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    if args.dask:
        figures.update(_dask_figures(messages, args.dask, figures))
    for name, value in figures.items():
        print(f"{name:<22} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

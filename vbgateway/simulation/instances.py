"""Gateway instances of a simulation, run one after another or in parallel processes.

A scenario's traffic is served by ``scenario.gateways`` gateway instances, as
a deployment spreads sessions over several gateway processes: instance ``k``
serves the sessions whose index is ``k`` modulo the count. Each instance is a
whole gateway with its own database, ids, retry jitter and vendor draws, all
seeded from the scenario and instance number, so what an instance does does
not depend on where it runs. That is what lets a large run use one process
per core and still give, to the byte, the result of running the instances
one after another in this process. When all instances are done their rows
are appended to the target database, instance by instance.
"""

from __future__ import annotations

import os
import pickle
import queue
import resource
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DatabaseError
from ..gateway import Gateway
from ..gc_tuning import lean_gc
from ..store import Store, tables
from ..store.merge import MERGED_TABLES, NO_VACUUM
from .budgets import apply_shares
from .digest import TableSums, table_sums
from .recorder import RowRecorder
from .scenario import Scenario
from .world import Progress, World

__all__ = ["CONTROL_TABLES", "DATA_TABLES", "SIM_FILE_SETTINGS", "InstanceResult", "InstanceSpec",
           "open_instance_store", "run_in_processes", "run_instance", "workers_for"]

CONTROL_TABLES = tuple(t.name for t in tables.CONTROL_TABLES)  # set up once, copied to every instance
DATA_TABLES = tuple(t.name for t in MERGED_TABLES)  # what the instances write, merged into the target
_CHILD = "import sys; from vbgateway.simulation.instances import _child; sys.exit(_child(sys.argv[1]))"
PARALLEL_FROM_MESSAGES = 60_000  # below this a second process costs more (its start-up) than it saves
SIM_DUCKDB_MEMORY = "100MB"  # DuckDB's cache for each database file a simulation writes (more is not faster)
# A month is written, not analysed: DuckDB's default cache (80% of RAM) would keep most of it in memory.
# No vacuum: see ``NO_VACUUM``.
SIM_FILE_SETTINGS: dict[str, bool | int | str] = {"memory_limit": SIM_DUCKDB_MEMORY, **NO_VACUUM}


@dataclass
class InstanceSpec:
    """Everything one instance needs; plain data, so it can be sent to another process."""

    scenario: Scenario
    index: int
    run: int  # how many times the target database had been opened: keeps keys of repeated runs apart
    db: str | None  # the instance's own database file; None: in memory
    control: dict[str, list[tuple[Any, ...]]]  # tenants, keys, agents (``Store.table_rows``): every instance's
    commit_window_s: float
    flush_records: int
    journal: bool
    budgets: dict[str, str] = field(default_factory=dict)  # tenant id -> this instance's share of its budget


@dataclass
class InstanceResult:
    recorder: RowRecorder  # its customers' rows, compact: the run's frame is built once, from all instances
    virtual_s: float
    traffic_digest: str  # of the whole scenario's traffic: every instance draws all of it, then keeps its share
    table_sums: TableSums = field(default_factory=dict)  # of its data tables, summed where it ran
    peak_rss_mb: float = 0.0  # of the instance's own process, when it had one


def workers_for(scenario: Scenario, requested: int | None) -> int:
    """Processes to run the instances in: as asked, else one per core for large runs."""
    if requested is not None:
        return max(1, min(int(requested), scenario.gateways))
    if scenario.gateways == 1 or scenario.expected_messages() < PARALLEL_FROM_MESSAGES:
        return 1
    return max(1, min(scenario.gateways, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1))


def open_instance_store(spec: InstanceSpec, duckdb_threads: int | None = None) -> Store:
    """The instance's own database (its file, else in memory), holding the tenants, keys and agents of the run.

    ``duckdb_threads``: instances running side by side, one per core, gain
    nothing from DuckDB's own threads but contention.
    """
    settings = dict(SIM_FILE_SETTINGS) if spec.db is not None else {}
    if duckdb_threads is not None:
        settings["threads"] = int(duckdb_threads)
    store = Store(spec.db if spec.db is not None else ":memory:", now=spec.scenario.start,
                  flush_records=spec.flush_records, journal=spec.journal and spec.db is not None,
                  commit_window_s=spec.commit_window_s, settings=settings)
    try:
        store.insert_rows(spec.control)
    except BaseException:
        store.close()
        raise
    return store


def run_instance(spec: InstanceSpec, progress: Progress | None = None, store: Store | None = None, *,
                 duckdb_threads: int | None = None) -> InstanceResult:
    """Serve instance ``spec.index``'s share of the traffic through a gateway on its own database.

    ``store``: the instance's database, opened by ``open_instance_store`` and
    left open for the caller; by default one is opened (with
    ``duckdb_threads``) and closed here.
    """
    scenario, k = spec.scenario, spec.index
    world = World(scenario, run=spec.run, index=k, commit_window_s=spec.commit_window_s)
    own = store is None
    if store is None:
        store = open_instance_store(spec, duckdb_threads)
    try:
        gw = Gateway(store, providers=world.providers, clock=world.clock, retry=scenario.policy,
                     prices=scenario.prices, seed=f"{scenario.seed}/{spec.run}/gateway-{k}", breaker=scenario.breaker)
        apply_shares(gw, spec.budgets)
        with lean_gc():
            recorder, traffic_digest = world.serve(gw, progress)
            store.flush()
        sums = table_sums(gw, DATA_TABLES)  # here, in parallel with the other instances, not after the merge
    finally:
        if own:
            store.close()
    return InstanceResult(recorder, world.clock.monotonic(), traffic_digest, sums)


def _child(spec_path: str) -> int:
    """Entry of a child process: run one instance, print progress lines, leave the rows in a file."""
    with open(spec_path, "rb") as handle:
        spec: InstanceSpec = pickle.load(handle)
    last = [-3600.0]

    def progress(simulated_s: float, done: int) -> None:
        if simulated_s - last[0] >= 3600:
            last[0] = simulated_s
            print(f"progress {simulated_s} {done}", flush=True)

    out = spec_path.removesuffix(".spec")
    try:
        result = run_instance(spec, progress, duckdb_threads=1)
        result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except BaseException as exc:
        try:
            payload = pickle.dumps(exc)
        except Exception:
            payload = pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))
        Path(out + ".error").write_bytes(payload)
        return 1
    with open(out + ".result", "wb") as sink:
        pickle.dump(result, sink, protocol=pickle.HIGHEST_PROTOCOL)
    return 0


def _follow(index: int, process: subprocess.Popen[str], events: queue.Queue[tuple[int, str]]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        events.put((index, line))
    events.put((index, ""))  # the child closed its output: it is ending


def run_in_processes(specs: list[InstanceSpec], workers: int, out_dir: Path, progress: Progress | None,
                     finished: Callable[[InstanceSpec], None] | None = None) -> list[InstanceResult]:
    """Run the instances ``workers`` at a time, each in a fresh Python process.

    Children are started as plain ``python -c`` processes: unlike
    multiprocessing's spawn, which re-imports the parent's main module, that
    works the same from a script, the CLI, a notebook kernel or standard input.
    ``finished(spec)`` is called as each instance ends well, while the others
    may still run (the caller merges its rows meanwhile).
    """
    events: queue.Queue[tuple[int, str]] = queue.Queue()
    waiting = list(specs)
    running: dict[int, subprocess.Popen[str]] = {}
    results: dict[int, InstanceResult] = {}
    seen: dict[int, tuple[float, int]] = {spec.index: (0.0, 0) for spec in specs}
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                spec = waiting.pop(0)
                spec_path = out_dir / f"gateway-{spec.index}.spec"
                spec_path.write_bytes(pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL))
                process = subprocess.Popen([sys.executable, "-c", _CHILD, str(spec_path)], stdout=subprocess.PIPE,
                                           text=True)
                running[spec.index] = process
                threading.Thread(target=_follow, args=(spec.index, process, events), daemon=True).start()
            index, line = events.get()
            if line.startswith("progress "):
                _, simulated_s, done = line.split()
                seen[index] = (float(simulated_s), int(done))
            elif not line:
                code = running.pop(index).wait()
                base = out_dir / f"gateway-{index}"
                if code != 0:
                    error = base.with_suffix(".error")
                    if error.exists():
                        raise pickle.loads(error.read_bytes())
                    raise DatabaseError(f"simulation instance {index} stopped without a result (exit code {code})")
                with open(base.with_suffix(".result"), "rb") as handle:
                    results[index] = pickle.load(handle)
                seen[index] = (results[index].virtual_s, len(results[index].recorder))
                if finished is not None:
                    finished(next(spec for spec in specs if spec.index == index))
            if progress is not None:
                progress(sum(s for s, _ in seen.values()) / len(seen), sum(n for _, n in seen.values()))
    finally:
        for process in running.values():
            process.terminate()
            process.wait()
    return [results[spec.index] for spec in specs]



"""Simulations on a Dask cluster: every gateway instance of a run (or of several runs) is one Dask task.

A run is already split into gateway instances that depend on nothing but
their spec (``instances.py``), so a cluster needs no scheduler of ours:
Dask places the tasks (many more than workers is fine), reruns a task whose
worker died, and shows them on its dashboard. A task runs its instance on a
database in the worker's own temporary folder, then hands the rows back
(``staging.py``: Arrow streams in its result, or Parquet at a shared stage)
and, with a lake, writes them there too (``lake.py``). The client merges
each instance's rows into the target as its task ends, all in the one
transaction of ``Store.merging``: a task's result is taken once, so a
rerun task is merged once, and a failed run leaves nothing behind. The
result is the one a local run gives, to the digest: the instances are the
same, and the digest adds up per-instance sums in any order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from ..clock import SystemClock
from ..errors import ValidationError
from .budgets import instance_shares, record_run_alerts
from .dask_client import ClusterError, cluster_client, dashboard_link, distributed_module, local_workers, task_bar
from .instances import InstanceResult, InstanceSpec, run_instance
from .runner import DEFAULT_COMMIT_WINDOW_S, DEFAULT_FLUSH_RECORDS, _result, open_target, prepare_target
from .scenario import Scenario
from .staging import StagedRows, merge_staged, remove_stage, stage_rows
from .world import Progress

if TYPE_CHECKING:
    import pyarrow as pa
    from distributed import Client

    from ..store import Store
    from ..store.merge import Merge
    from .results import SimulationResult

__all__ = ["ClusterError", "TaskOutcome", "TaskPlace", "cluster_client", "dashboard_link", "local_workers", "run_task",
           "simulate_on_cluster", "simulate_with_cli", "task_bar"]


# ---------------------------------------------------------------------------- a task (on a worker)


@dataclass(frozen=True)
class TaskPlace:
    """Where a run's tasks put their rows: the run's id (names its files), a stage, a lake."""

    run_id: str
    stage: str | None = None
    lake: str | None = None


@dataclass
class TaskOutcome:
    """What a task hands back: the instance's result, its rows for the client, and where it ran."""

    result: InstanceResult
    staged: StagedRows
    lake_rows: dict[str, int] = field(default_factory=dict)
    worker: str = ""
    pid: int = 0


def _worker_folder() -> str | None:
    with contextlib.suppress(Exception):
        from distributed import get_worker

        return str(get_worker().local_directory)
    return None


def _worker_name() -> str:
    with contextlib.suppress(Exception):
        from distributed import get_worker

        return str(get_worker().address)
    return f"pid {os.getpid()}"


def run_task(spec: InstanceSpec, place: TaskPlace) -> TaskOutcome:
    """Run one instance where this is called (a Dask worker), on a database of its own in a temporary folder.

    Reads the instance's rows out (``stage_rows``), writes them to the lake
    when there is one, and removes the folder: nothing stays on the worker.
    """
    folder = tempfile.mkdtemp(prefix=f"vbgateway-{place.run_id}-{spec.index}-", dir=_worker_folder())
    try:
        db = str(Path(folder) / f"gateway-{spec.index}.duckdb")
        result = run_instance(dataclasses.replace(spec, db=db), None, duckdb_threads=1)
        with duckdb.connect(db, read_only=True, config={"threads": 1}) as con:
            con.execute("SET TimeZone = 'UTC'")
            staged = stage_rows(con, place.stage, place.run_id, spec.index)
            lake_rows: dict[str, int] = {}
            if place.lake is not None:
                from ..lake import write_part

                lake_rows = write_part(lambda sql, params: con.sql(sql, params=params or None).to_arrow_table(), place.lake,
                                       place.run_id, spec.index)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return TaskOutcome(result, staged, lake_rows, _worker_name(), os.getpid())


# ---------------------------------------------------------------------------- runs (on the client)


@dataclass
class _Run:
    """One simulation on the cluster: its target, instances and, as tasks end, their outcomes."""

    scenario: Scenario
    db: str | Path | duckdb.DuckDBPyConnection
    target: Store
    run_number: int
    before: Any
    control: dict[str, list[tuple[Any, ...]]]
    place: TaskPlace
    merged: bool
    shares: dict[str, str] = field(default_factory=dict)  # tenant id -> each instance's share of its budget
    outcomes: dict[int, TaskOutcome] = field(default_factory=dict)
    merge: Merge | None = None


def _submit_all(client: Client, runs: list[_Run], progress: Progress | None, commit_window_s: float,
                flush_records: int, journal: bool) -> dict[str, Any]:
    """Submit every instance of every run; merge each as its task ends; returns figures about the tasks."""
    distributed = distributed_module()
    futures = {}
    for r, run in enumerate(runs):
        for k in range(run.scenario.gateways):
            spec = InstanceSpec(run.scenario, k, run.run_number, None, run.control, commit_window_s, flush_records,
                                journal, run.shares)
            future = client.submit(run_task, spec, run.place, key=f"vbgateway-sim-{run.place.run_id}-{k}", pure=False)
            futures[future.key] = (future, r, k)
    total = len(futures)
    done_s, messages = 0.0, 0
    pending = {key for key in futures}
    try:
        for future in distributed.as_completed([f for f, _, _ in futures.values()]):
            _, r, k = futures[future.key]
            pending.discard(future.key)
            try:
                outcome: TaskOutcome = future.result()
            except distributed.client.FutureCancelledError as exc:
                raise ClusterError("the cluster cancelled a simulation task") from exc
            except Exception as exc:
                if type(exc).__name__ == "KilledWorker":
                    raise ClusterError(f"Dask lost the workers of instance {k} more often than it allows: {exc}",
                                       details={"instance": k}) from exc
                raise
            future.release()
            run = runs[r]
            if run.merge is not None:
                merge_staged(run.merge, outcome.staged)
            outcome.staged = StagedRows(rows=outcome.staged.rows, files=outcome.staged.files)
            run.outcomes[k] = outcome
            done_s += outcome.result.virtual_s
            messages += len(outcome.result.recorder)
            if progress is not None:
                progress(done_s / total, messages)
    except BaseException:
        client.cancel([futures[key][0] for key in pending])
        raise
    return {"tasks": total}


def _worker_figures(run: _Run) -> dict[str, float]:
    """Per worker process that ran instances of the run: its peak memory (MB), the latest seen."""
    peaks: dict[str, float] = {}
    for outcome in run.outcomes.values():
        name = f"{outcome.worker} (pid {outcome.pid})"
        peaks[name] = max(peaks.get(name, 0.0), round(outcome.result.peak_rss_mb, 1))
    return peaks


def _parts(run: _Run) -> list[InstanceResult]:
    """The instances' results in instance order, peak memory counted once per worker process."""
    parts, seen = [], set()
    for k in sorted(run.outcomes):
        outcome = run.outcomes[k]
        part = outcome.result
        if (outcome.worker, outcome.pid) in seen:
            part.peak_rss_mb = 0.0  # the process's peak is already counted with one of its instances
        seen.add((outcome.worker, outcome.pid))
        parts.append(part)
    return parts


def _lake_control(run: _Run) -> dict[str, pa.Table]:
    """The target's tenants and agents, for the lake's readers (names on reports and invoices)."""
    from ..store.tables import AGENTS, TENANTS

    return {t.name: run.target._arrow_reader(f"SELECT {', '.join(t.column_names)} FROM {t.name}", 100_000).read_all()
            for t in (TENANTS, AGENTS)}


def _commit_lake(run: _Run, control: dict[str, pa.Table], result: SimulationResult) -> None:
    from ..lake import commit_run

    assert run.place.lake is not None
    rows: dict[str, int] = {}
    for outcome in run.outcomes.values():
        for table, n in outcome.lake_rows.items():
            rows[table] = rows.get(table, 0) + n
    commit_run(run.place.lake, run.place.run_id, control, rows, {
        "scenario": run.scenario.name, "seed": run.scenario.seed, "start": run.scenario.start.isoformat(),
        "stop": run.scenario.stop.isoformat(), "instances": run.scenario.gateways,
        "messages": len(result.rows), "database_digest": result.database_digest,
        "committed_at": SystemClock().now().isoformat()})


def _remove_uncommitted_lake_parts(lake: str, run_id: str) -> None:
    """Best effort: a failed run's files in the lake (never read: the manifest does not name the run)."""
    from ..lake import filesystem

    with contextlib.suppress(Exception):
        fs, root = filesystem(lake)
        for path in fs.glob(f"{root}/*/**/part-{run_id}-*.parquet"):
            fs.rm(path)


def simulate_on_cluster(runs: list[tuple[Scenario, str | Path | duckdb.DuckDBPyConnection | None]],
                        cluster: Client | str, *, progress: Progress | None = None, stage: str | None = None,
                        lake: str | None = None, lake_only: bool = False,
                        commit_window_s: float = DEFAULT_COMMIT_WINDOW_S, flush_records: int = DEFAULT_FLUSH_RECORDS,
                        journal: bool = False, keep_open: bool = False) -> list[SimulationResult]:
    """Run scenarios (each into its database) with all their instances as tasks on ``cluster`` at once.

    ``simulate(..., cluster=...)`` is one run; ``compare_policies(...,
    cluster=...)`` is one per policy, all submitted together so that a grid
    of policies keeps every worker busy. ``lake_only``: the rows go to the
    lake alone; ``db`` keeps the tenants and agents (found by name in the
    next run, so the runs of a year, month by month, bill the same tenants)
    and counts the runs (which keeps their ids apart).
    """
    if isinstance(cluster, str):
        local_workers(cluster)  # a bad address is refused before the target is touched
    distributed_module()
    files = [str(Path(db).resolve()) for _, db in runs if isinstance(db, (str, Path)) and str(db) != ":memory:"]
    if len(set(files)) != len(files):
        raise ValidationError("runs submitted together need a database each", details={"databases": files})
    if lake_only and lake is None:
        raise ValidationError("lake_only needs a lake")
    if lake is not None:
        from ..lake import check_lake_target

        check_lake_target(lake)
    started = SystemClock().monotonic()
    prepared: list[_Run] = []
    committed: set[str] = set()
    try:
        for scenario, db in runs:
            target = open_target(db, scenario.start)
            run_id = uuid.uuid4().hex[:12]
            run_number, before, control = prepare_target(target, scenario)
            prepared.append(_Run(scenario, ":memory:" if db is None else db, target, run_number, before, control,
                                 TaskPlace(run_id, stage, lake), merged=not lake_only,
                                 shares=instance_shares(target, scenario)))
        with cluster_client(cluster) as client, contextlib.ExitStack() as merges:
            for run in prepared:
                if run.merged:
                    run.merge = merges.enter_context(run.target.merging())
            figures = _submit_all(client, prepared, progress, commit_window_s, flush_records, journal)
            link, workers = dashboard_link(client), len(client.scheduler_info().get("workers", {}))
            address = str(client.scheduler.address) if client.scheduler is not None else None
        results = []
        for run in prepared:
            control = _lake_control(run) if lake is not None else {}
            if run.merged:
                record_run_alerts(run.target, run.scenario)  # the thresholds the merged spend crossed
            result = _result(run.scenario, run.db, run.target, _parts(run), run.before, started, keep_open)
            result.cluster = {"scheduler": address, "dashboard": link, "workers": workers, "tasks": figures["tasks"],
                              "run_id": run.place.run_id, "merged": run.merged,
                              "worker_peak_rss_mb": _worker_figures(run)}
            if lake is not None:
                _commit_lake(run, control, result)  # one after another: each rewrites the manifest
                committed.add(run.place.run_id)
            results.append(result)
        return results
    except BaseException:
        for run in prepared:
            run.target.close()
        if lake is not None:
            for run in prepared:
                if run.place.run_id not in committed:
                    _remove_uncommitted_lake_parts(lake, run.place.run_id)
        raise
    finally:
        if stage is not None:
            for run in prepared:
                with contextlib.suppress(Exception):
                    remove_stage(stage, run.place.run_id)


def simulate_with_cli(scenario: Scenario, db: str | Path, cluster: str, *, stage: str | None = None,
                      lake: str | None = None, lake_only: bool = False, quiet: bool = False) -> SimulationResult:
    """``vbgateway simulate --dask``: the cluster and its dashboard on standard error, a bar over the tasks."""
    with cluster_client(cluster) as client:
        workers = len(client.scheduler_info().get("workers", {}))
        link = dashboard_link(client) or "none (the dashboard needs bokeh)"
        print(f"Dask cluster {client.scheduler.address if client.scheduler else cluster}: {workers} workers, "
              f"{scenario.gateways} tasks; dashboard: {link}", file=sys.stderr, flush=True)
        update, bar = task_bar(scenario.gateways, quiet=quiet)
        try:
            return simulate_on_cluster([(scenario, db)], client, progress=update, stage=stage, lake=lake,
                                       lake_only=lake_only)[0]
        finally:
            bar.close()

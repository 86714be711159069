"""``simulate``: run a scenario's gateway instances on virtual time and merge their rows into one database.

The world each instance serves is ``world.py``; an instance on its own
database, and instances in processes of their own, are ``instances.py``.
This module prepares the target database (tenants and agents, found by name
or created), runs the instances here or in processes, appends each one's
rows to the target as it ends (``Store.merging``: one transaction for all),
and builds the result.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from ..clock import SystemClock, VirtualClock
from ..errors import ValidationError
from ..gateway import Gateway
from ..reliability import RetryPolicy
from ..store import Store
from ..store.merge import Merge
from .budgets import instance_shares, record_run_alerts, set_scenario_budgets
from .digest import DIGEST_TABLES, TableSums, add_sums, digest_of, table_sums
from .instances import (
    CONTROL_TABLES,
    DATA_TABLES,
    SIM_FILE_SETTINGS,
    InstanceResult,
    InstanceSpec,
    open_instance_store,
    run_in_processes,
    run_instance,
    workers_for,
)
from .recorder import RowRecorder
from .scenario import Scenario, load_scenario
from .world import Progress, agent_vendors, quiet_vendors, setup_tenants

if TYPE_CHECKING:
    from distributed import Client

    from .results import SimulationResult

__all__ = ["DEFAULT_COMMIT_WINDOW_S", "DEFAULT_FLUSH_RECORDS", "Progress", "open_target", "prepare_target",
           "run_instance", "simulate"]

DEFAULT_COMMIT_WINDOW_S = 0.01  # virtual seconds replies wait to share one fsync (journal=True; else no wait)
DEFAULT_FLUSH_RECORDS = 20_000  # replies applied to DuckDB per batch: a pending reply is its JSON (~1 KB)


def simulate(scenario: Scenario | str | Path | dict[str, Any],
             db: str | Path | duckdb.DuckDBPyConnection | None = ":memory:", *,
             policy: RetryPolicy | None = None, progress: Progress | None = None,
             commit_window_s: float = DEFAULT_COMMIT_WINDOW_S, flush_records: int = DEFAULT_FLUSH_RECORDS,
             keep_open: bool = False, journal: bool = False, workers: int | None = None,
             cluster: Client | str | None = None, stage: str | None = None, lake: str | None = None,
             lake_only: bool = False) -> SimulationResult:
    """Run ``scenario`` (optionally under another ``policy``) against the database ``db``.

    Tenants and agents are found by name or created; every session, message,
    provider call and usage event lands in ``db`` with simulated timestamps.
    The scenario's gateway instances (``instances.py``) run one after another,
    or ``workers`` at a time in their own processes (by default one per core
    for large runs); the outcome is the same either way. The result holds one
    row per customer message and the summaries. With ``keep_open`` the
    result keeps a gateway on ``db`` (``result.gateway``) for more queries;
    close it with ``result.close()``.

    ``cluster`` (a ``distributed.Client``, a scheduler address or
    ``"local:N"``) runs the instances as Dask tasks instead, with the same
    result (``cluster.py``); there ``stage`` (an fsspec folder URL) carries
    the rows back as Parquet, and ``lake`` also writes them as a
    Hive-partitioned Parquet lake (``lake_only``: there alone, ``db`` keeping
    the tenants and agents).
    """
    scenario = load_scenario(scenario)
    if policy is not None:
        scenario = scenario.with_policy(policy)
    if cluster is not None:
        from .cluster import simulate_on_cluster

        return simulate_on_cluster([(scenario, db)], cluster, progress=progress, stage=stage, lake=lake,
                                   lake_only=lake_only, commit_window_s=commit_window_s, flush_records=flush_records,
                                   journal=journal, keep_open=keep_open)[0]
    if stage is not None or lake is not None or lake_only:
        raise ValidationError("a stage or a lake is where cluster workers write: give a cluster too (local:N "
                              "for this machine)", details={"stage": stage, "lake": lake})
    db = ":memory:" if db is None else db
    started = SystemClock().monotonic()
    target = open_target(db, scenario.start)
    try:
        run_number, before, control = prepare_target(target, scenario)
        shares = instance_shares(target, scenario)  # each instance's fixed share of a tenant's budget
        count = workers_for(scenario, workers)
        folder = Path(db).parent if isinstance(db, (str, Path)) and str(db) != ":memory:" else None
        with tempfile.TemporaryDirectory(prefix=".vbgateway-sim-", dir=folder) as tmp:
            specs = [InstanceSpec(scenario, k, run_number, None if count == 1 and folder is None else
                                  str(Path(tmp) / f"gateway-{k}.duckdb"), control, commit_window_s, flush_records,
                                  journal, shares) for k in range(scenario.gateways)]
            if count > 1:
                parts = _run_in_processes_and_merge(specs, count, Path(tmp), progress, target)
            else:
                parts = _run_here_and_merge(specs, progress, target)
        record_run_alerts(target, scenario)  # the thresholds the merged spend crossed
        return _result(scenario, db, target, parts, before, started, keep_open)
    except BaseException:
        target.close()
        raise


def open_target(db: str | Path | duckdb.DuckDBPyConnection | None, start: datetime) -> Store:
    """The store a run's rows end up in: a file, ``None``/``":memory:"``, or the caller's connection.

    No journal: it makes each acknowledged reply durable before DuckDB holds
    it, at one fsync per group commit, and simulated traffic is sparse in
    virtual time, so nearly every reply would pay its own fsync (about 370
    replies a second instead of thousands). A simulation that crashes is
    simply run again. The same holds for the instances' own databases unless
    ``journal=True`` asks for the production write path, fsyncs included.
    """
    if isinstance(db, duckdb.DuckDBPyConnection):
        return Store(db, now=start, journal=False)  # the caller's connection keeps the caller's settings
    if db is None or str(db) == ":memory:":
        return Store(":memory:", now=start, journal=False)
    return Store(db, now=start, journal=False, settings=SIM_FILE_SETTINGS)


def prepare_target(target: Store, scenario: Scenario) -> tuple[int, TableSums, dict[str, list[tuple[Any, ...]]]]:
    """Create (or find by name) the scenario's tenants and agents in the target database.

    Returns what the instances start from: the run's number (how many times
    the database was opened, which keeps keys of repeated runs apart), the
    sums of the rows earlier runs left (the instances add theirs), and the
    tenants, keys and agents as plain rows for every instance to copy.
    """
    setup = Gateway(target, clock=VirtualClock(start=scenario.start), prices=scenario.prices,
                    providers=quiet_vendors(), seed=f"{scenario.seed}/setup")
    setup_tenants(setup, scenario)
    set_scenario_budgets(setup, scenario)
    target.flush()
    return target.open_count, table_sums(setup, DATA_TABLES), target.table_rows(CONTROL_TABLES)


def _one_of(progress: Progress | None, k: int, scenario: Scenario, done_before: int) -> Progress | None:
    """Progress of instance ``k`` of instances run in turn, as progress of the whole run."""
    if progress is None:
        return None
    whole = scenario.duration.total_seconds()

    def update(simulated_s: float, messages: int) -> None:
        progress((k * whole + min(simulated_s, whole)) / scenario.gateways, done_before + messages)

    return update


def _run_in_processes_and_merge(specs: list[InstanceSpec], workers: int, tmp: Path, progress: Progress | None,
                                target: Store) -> list[InstanceResult]:
    """Run the instances in processes; append each one's rows to ``target`` as soon as it ends.

    Instances rarely end together (the cores of a shared machine do not run
    at the same speed), so the first merge runs while the last instance
    still works. Merges run one at a time on a helper thread, in the one
    transaction of ``target.merging()``: a run that fails leaves none of
    its instances' rows behind.
    """
    merges: list[Future[None]] = []
    with target.merging() as merge:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vbgateway-merge") as merger:  # waits for them
            parts = run_in_processes(specs, workers, tmp, progress,
                                     lambda spec: merges.append(merger.submit(merge.add_file, str(spec.db))))
        for done in merges:
            done.result()  # a failed merge fails the run
    return parts


def _run_here_and_merge(specs: list[InstanceSpec], progress: Progress | None, target: Store) -> list[InstanceResult]:
    """Run the instances one after another in this process, appending each one's rows as it ends."""
    parts: list[InstanceResult] = []
    with target.merging() as merge:
        for spec in specs:
            done = sum(len(part.recorder) for part in parts)
            parts.append(_run_and_append(spec, merge, _one_of(progress, spec.index, spec.scenario, done)))
    return parts


def _run_and_append(spec: InstanceSpec, merge: Merge, progress: Progress | None) -> InstanceResult:
    """One instance, on an in-memory database unless it has a file, then its rows appended to the target."""
    if spec.db is not None:
        result = run_instance(spec, progress)
        merge.add_file(spec.db)
        return result
    store = open_instance_store(spec)
    try:
        result = run_instance(spec, progress, store)
        merge.add_store(store)
    finally:
        store.close()
    return result


def _all_rows(parts: list[InstanceResult]) -> RowRecorder:
    """Every instance's rows in one recorder, each part let go once copied (a month's rows are large)."""
    merged = parts[0].recorder
    for part in parts[1:]:
        merged.extend(part.recorder)
        part.recorder = RowRecorder(merged.tenants, merged.agents, merged.vendors)
    return merged


def _result(scenario: Scenario, db: str | Path | duckdb.DuckDBPyConnection, target: Store,
            parts: list[InstanceResult], before: TableSums, started: float, keep_open: bool) -> SimulationResult:
    from .results import SimulationResult  # pandas: the parent's side only, never an instance's process

    rows = _all_rows(parts).frame(scenario.start, release=True)
    gw = Gateway(target, prices=scenario.prices, providers=quiet_vendors())
    try:
        tenants, tenant_names, agent_names = setup_tenants(gw, scenario)
        result = SimulationResult(scenario=scenario, rows=rows,
                                  db=None if isinstance(db, duckdb.DuckDBPyConnection) or str(db) == ":memory:"
                                  else str(db),
                                  traffic_digest=parts[0].traffic_digest,
                                  tenant_ids={name: t.client.id for name, t in zip(tenant_names, tenants, strict=True)},
                                  agent_vendors=agent_vendors(gw, tenants, agent_names),
                                  wall_s=SystemClock().monotonic() - started,
                                  virtual_s=max(part.virtual_s for part in parts),
                                  worker_peak_rss_mb=round(sum(part.peak_rss_mb for part in parts), 1),
                                  gateway=gw if keep_open else None)
    except BaseException:
        gw.close()
        raise
    if keep_open:
        return result
    shared = tuple(table for table in DIGEST_TABLES if table not in DATA_TABLES)  # tenants and agents
    result.database_digest = digest_of(add_sums(before, *(part.table_sums for part in parts), table_sums(gw, shared)))
    gw.close()
    return result

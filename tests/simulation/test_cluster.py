"""Simulations on Dask (``simulate(..., cluster=...)``): the answer of a local run, whatever the workers.

One ``LocalCluster`` of two worker processes serves the module; the
scenarios are small (a couple of thousand messages) and have more gateway
instances than workers, so Dask queues tasks and they end in any order.
"""

from __future__ import annotations

import pytest
from distributed import Client, LocalCluster

from vbgateway import Gateway, RetryPolicy
from vbgateway.errors import ValidationError
from vbgateway.simulation import compare_policies, simulate
from vbgateway.simulation.digest import table_digest

WALL_FIGURES = {"wall_s", "sim_msgs_per_wall_s", "virtual_s_per_wall_s"}


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) \
            as cluster, Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def four(make_scenario):
    """Four instances for two workers."""
    return make_scenario(gateways=4)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, four):
    """The scenario run in this process, one instance after another."""
    return simulate(four, tmp_path_factory.mktemp("ref") / "one.duckdb", workers=1)


def _same_outcome(a, b) -> None:
    assert a.database_digest is not None and a.database_digest == b.database_digest
    assert a.rows.equals(b.rows)
    assert a.traffic_digest == b.traffic_digest
    assert {k: v for k, v in a.summary().items() if k not in WALL_FIGURES} == \
        {k: v for k, v in b.summary().items() if k not in WALL_FIGURES}


def test_instances_as_dask_tasks_give_the_digest_rows_and_summary_of_one_process(tmp_path, client, four, reference):
    calls: list[tuple[float, int]] = []
    db = tmp_path / "dask.duckdb"
    result = simulate(four, db, cluster=client, progress=lambda s, n: calls.append((s, n)))
    _same_outcome(reference, result)
    with Gateway.open_reader(db) as gw:  # the merged file holds exactly what the digest says
        assert table_digest(gw) == result.database_digest
    assert len(calls) == 4 and calls[-1][1] == len(result.rows)  # once per finished task
    assert result.cluster["tasks"] == 4 and result.cluster["workers"] == 2
    assert result.cluster["dashboard"] is None  # this cluster runs no dashboard: no link rather than a dead one
    assert 1 <= len(result.cluster["worker_peak_rss_mb"]) <= 2


def test_one_worker_or_local_processes_give_the_same_digest(tmp_path, four, reference):
    """``local:1`` starts and stops a cluster of its own; local worker processes without Dask agree too."""
    one = simulate(four, tmp_path / "one.duckdb", cluster="local:1")
    assert one.database_digest == reference.database_digest
    assert one.cluster["workers"] == 1
    processes = simulate(four, tmp_path / "p.duckdb", workers=2)
    assert processes.database_digest == reference.database_digest


def test_rows_staged_as_parquet_at_a_shared_folder_merge_to_the_same_database(tmp_path, client, four, reference):
    stage = tmp_path / "stage"
    result = simulate(four, tmp_path / "staged.duckdb", cluster=client, stage=str(stage))
    _same_outcome(reference, result)
    assert list(stage.iterdir()) == []  # the run's stage folder went once its rows were committed


def test_a_task_that_fails_leaves_none_of_the_runs_rows_in_the_target(tmp_path, client, four):
    """Every task fails to stage (the stage lies under a file): the merges of the others are undone."""
    (tmp_path / "a-file").write_text("not a folder")
    db = tmp_path / "failed.duckdb"
    with pytest.raises(Exception):
        simulate(four, db, cluster=client, stage=str(tmp_path / "a-file" / "stage"))
    with Gateway.open_reader(db) as gw:
        counts = gw.sql("SELECT (SELECT count(*) FROM sessions) AS s, (SELECT count(*) FROM usage_events) AS u, "
                        "(SELECT count(*) FROM tenants) AS t")
    assert (int(counts.s[0]), int(counts.u[0]), int(counts.t[0])) == (0, 0, 2)


def test_compare_policies_on_the_cluster_tabulates_what_local_runs_do(client, scenario):
    policies = {"3x": RetryPolicy(attempts=3), "1x": RetryPolicy(attempts=1, fallback=False)}
    local = compare_policies(scenario, policies)
    remote = compare_policies(scenario, policies, cluster=client)
    assert remote.traffic_identical()
    columns = [c for c in local.table.columns if c not in WALL_FIGURES]
    assert local.table[columns].equals(remote.table[columns])
    for name in policies:
        assert local.results[name].database_digest == remote.results[name].database_digest
    assert remote.results["3x"].summary()["success_rate"] > remote.results["1x"].summary()["success_rate"]


@pytest.mark.parametrize("cluster", ["local:0", "local:x", "somewhere", ""])
def test_a_cluster_that_is_neither_an_address_nor_local_n_is_refused(tmp_path, scenario, cluster):
    db = tmp_path / "refused.duckdb"
    with pytest.raises(ValidationError):
        simulate(scenario, db, cluster=cluster)
    assert not db.exists()  # refused before the target was touched


def test_a_stage_or_lake_without_a_cluster_is_refused_before_anything_runs(tmp_path, scenario):
    with pytest.raises(ValidationError, match="cluster"):
        simulate(scenario, tmp_path / "x.duckdb", lake=str(tmp_path / "lake"))
    assert not (tmp_path / "x.duckdb").exists() and not (tmp_path / "lake").exists()

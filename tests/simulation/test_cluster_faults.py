"""A worker process killed during a run: Dask reruns its task, and the database is what it would have been."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from distributed import Client, LocalCluster

from vbgateway import Gateway
from vbgateway.simulation import simulate
from vbgateway.simulation.digest import table_digest

TABLES = ("sessions", "messages", "provider_call_events", "usage_events", "idempotency_records")


def _kill_the_first_worker_running_an_instance(client: Client, pids: dict[str, int], killed: dict[str, object]) -> None:
    """Wait until a worker runs a simulation task, let it get well into its instance, then SIGKILL that worker."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for address, keys in client.processing().items():
            running = [key for key in keys if str(key).startswith("vbgateway-sim-")]
            if running:
                time.sleep(0.4)  # an instance of this scenario runs for a second or more
                os.kill(pids[address], signal.SIGKILL)
                killed.update(address=address, pid=pids[address], key=str(running[0]))
                return
        time.sleep(0.01)


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_survived_with_the_same_digest_and_nothing_merged_twice(tmp_path, make_scenario):
    scenario = make_scenario(duration="12h")  # two instances of ~1,900 messages each
    reference = simulate(scenario, tmp_path / "reference.duckdb", workers=1)
    db = tmp_path / "dask.duckdb"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) \
            as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        killed: dict[str, object] = {}
        killer = threading.Thread(target=_kill_the_first_worker_running_an_instance, args=(client, pids, killed))
        killer.start()
        result = simulate(scenario, db, cluster=client, stage=str(tmp_path / "stage"))
        killer.join()
        story = client.story(killed["key"])
    assert killed, "no worker was seen running an instance"
    processing = [event for event in story if event[0] == "scheduler" and event[3] == "processing"]
    assert len(processing) >= 2, story  # the task was started again after its worker died
    assert all(f"(pid {killed['pid']})" not in name for name in result.cluster["worker_peak_rss_mb"])
    assert result.database_digest == reference.database_digest
    assert result.rows.equals(reference.rows)
    with Gateway.open_reader(db) as gw, Gateway.open_reader(tmp_path / "reference.duckdb") as ref:
        assert table_digest(gw) == reference.database_digest
        for table in TABLES:  # the dead attempt's rows were never merged
            assert gw.sql(f"SELECT count(*) AS n FROM {table}").n[0] == ref.sql(f"SELECT count(*) AS n FROM {table}").n[0]
    assert list((tmp_path / "stage").iterdir()) == []

"""``vbgateway simulate --dask``: the run on a local cluster, its dashboard and a bar over its tasks."""

from __future__ import annotations

import json

import pytest

from vbgateway.cli import main
from vbgateway.lake import open_source
from vbgateway.simulation import simulate


def _scenario_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\nstart: 2026-03-03T10:00:00Z\nduration: 2h\nseed: 3\ntenants: 2\ngateways: 3\n"
                    "traffic: {sessions_per_hour: 40}\n")
    return path


def test_simulate_on_a_local_cluster_prints_the_dashboard_shows_tasks_and_writes_db_and_lake(tmp_path, capsys):
    scenario, db, lake = _scenario_file(tmp_path), tmp_path / "sim.duckdb", tmp_path / "lake"
    code = main(["simulate", str(scenario), "--db", str(db), "--dask", "local:2", "--lake", str(lake), "--json"])
    out = capsys.readouterr()
    assert code == 0
    assert "Dask cluster tcp://127.0.0.1:" in out.err and "2 workers, 3 tasks; dashboard: " in out.err
    assert "3/3" in out.err and "task" in out.err  # the bar over the tasks
    summary = json.loads(out.out.strip().splitlines()[-1])
    local = simulate(str(scenario), tmp_path / "local.duckdb").summary()
    assert (summary["messages"], summary["replies"], summary["cost_usd"]) == \
        (local["messages"], local["replies"], str(local["cost_usd"]))
    for source in (db, lake):
        with open_source(source) as gw:
            assert str(gw.sql("SELECT sum(cost_usd) AS c FROM usage_events").c[0]) == str(local["cost_usd"])


@pytest.mark.parametrize("flags", [["--lake-only"], ["--lake", "LAKE"], ["--stage", "LAKE"], ["--dask", "nowhere"]])
def test_cluster_flags_that_do_not_fit_are_refused_with_a_code_and_nothing_written(tmp_path, capsys, flags):
    db = tmp_path / "sim.duckdb"
    flags = [str(tmp_path / "lake") if f == "LAKE" else f for f in flags]
    code = main(["simulate", str(_scenario_file(tmp_path)), "--db", str(db), "--quiet", *flags])
    assert code == 2 and "VALIDATION_ERROR" in capsys.readouterr().err
    assert not db.exists() and not (tmp_path / "lake").exists()

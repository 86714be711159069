"""``vbgateway simulate``: runs a scenario file into a database and reports on it."""

from __future__ import annotations

import json

import duckdb

from vbgateway.cli import main


def _scenario_file(tmp_path, **extra):
    path = tmp_path / "tiny.yaml"
    lines = ["name: tiny", "start: 2026-03-03T10:00:00Z", "duration: 2h", "seed: 3", "tenants: 1",
             "traffic: {sessions_per_hour: 30}"] + [f"{k}: {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_simulate_writes_the_database_and_prints_a_json_summary(tmp_path, capsys):
    db = tmp_path / "out" / "sim.duckdb"
    code = main(["simulate", str(_scenario_file(tmp_path)), "--db", str(db), "--json", "--quiet", "--save"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["scenario"] == "tiny" and summary["messages"] > 20
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM usage_events").fetchone()[0] == summary["replies"]
    assert (tmp_path / "out" / "sim.messages.parquet").exists()
    assert json.loads((tmp_path / "out" / "sim.summary.json").read_text())["replies"] == summary["replies"]


def test_simulate_shows_progress_in_simulated_time_and_a_readable_summary(tmp_path, capsys):
    code = main(["simulate", str(_scenario_file(tmp_path)), "--db", str(tmp_path / "sim.duckdb")])
    out = capsys.readouterr()
    assert code == 0
    assert "simulated h" in out.err and "messages" in out.err
    assert "tiny:" in out.out and "tries per reply" in out.out and "vendorA" in out.out


def test_a_bad_scenario_is_one_line_with_its_code_and_a_nonzero_exit(tmp_path, capsys):
    bad = _scenario_file(tmp_path, traffic="{sessions_per_hour: -1}")
    bad.write_text(bad.read_text().replace("traffic: {sessions_per_hour: 30}\n", ""))
    code = main(["simulate", str(bad), "--db", str(tmp_path / "sim.duckdb"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "INVALID_SCENARIO" in err and "sessions_per_hour" in err and "Traceback" not in err


def test_an_example_runs_by_name_and_an_unknown_name_lists_the_known_ones(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples ship with the package, not with the working directory
    code = main(["simulate", "vendor_a_outage", "--db", str(tmp_path / "sim.duckdb"), "--json", "--quiet"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["scenario"] == "vendor_a_outage" and summary["replies"] > 1000

    code = main(["simulate", "vendor_b_outage", "--db", str(tmp_path / "other.duckdb"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "SCENARIO_NOT_FOUND" in err and "vendor_a_outage" in err and "normal_week" in err
    assert not (tmp_path / "other.duckdb").exists()

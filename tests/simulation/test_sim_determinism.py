"""Same scenario and seed: identical rows and identical database contents."""

from __future__ import annotations

import pytest
from conftest import small_scenario

from vbgateway.simulation import simulate


@pytest.fixture(scope="module")
def first(tmp_path_factory, scenario):
    return simulate(scenario, tmp_path_factory.mktemp("det") / "a.duckdb")


def test_two_runs_of_one_seeded_scenario_produce_the_same_digest_rows_and_database(tmp_path, scenario, first):
    second = simulate(scenario, tmp_path / "b.duckdb")
    assert len(first.rows) > 300
    assert first.database_digest is not None
    assert first.database_digest == second.database_digest
    assert first.traffic_digest == second.traffic_digest
    assert first.rows.equals(second.rows)
    assert first.digest() == second.digest()


def test_another_seed_gives_other_traffic_and_another_digest(tmp_path, scenario, first):
    other = simulate(scenario.model_copy(update={"seed": 6}), tmp_path / "b.duckdb")
    assert first.traffic_digest != other.traffic_digest
    assert first.database_digest != other.database_digest


def test_database_timestamps_are_simulated_not_wall_clock(tmp_path, scenario):
    result = simulate(scenario, tmp_path / "a.duckdb", keep_open=True)
    try:
        span = result.gateway.sql("SELECT min(created_at) AS lo, max(created_at) AS hi FROM usage_events")
    finally:
        result.close()
    assert span.lo[0] >= scenario.start
    assert span.hi[0] <= scenario.stop + (scenario.duration / 6)  # sessions begun late may run a little over


def test_rows_hold_one_line_per_generated_message(scenario, first):
    rows = first.rows
    assert list(rows.message) == list(range(len(rows)))
    assert set(rows.outcome) <= {"ok", "failed"}
    assert (rows.attempts >= 1).all()
    ok = rows[rows.outcome == "ok"]
    assert (ok.cost_units > 0).all() and ok.vendor_used.notna().all()
    assert small_scenario().traffic == scenario.traffic

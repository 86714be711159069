"""The vendorA outage example with and without a circuit breaker, on the same seeded traffic."""

from __future__ import annotations

import pytest
import yaml

from vbgateway import BreakerPolicy
from vbgateway.simulation import GatewayPolicy, Scenario, ScenarioError, breaker_grid, compare_policies, simulate
from vbgateway.simulation.examples import example_path

OUTAGE = ("2026-03-03 14:00:00+00", "2026-03-03 15:30:00+00")  # the example's incident window


def small_outage(**changes) -> Scenario:
    """The example scenario from 13:30 to 16:00 at a third of its traffic: ~300 messages, two gateways."""
    data = yaml.safe_load(example_path("vendor_a_outage").read_text(encoding="utf-8"))
    data.update(start="2026-03-03T13:30:00Z", duration="2h30m", gateways=2, **changes)
    data["traffic"]["sessions_per_hour"] = 20
    return Scenario.parse(data)


@pytest.fixture(scope="module")
def comparison():
    scenario = small_outage()
    result = compare_policies(scenario, {"no breaker": GatewayPolicy(retry=scenario.policy),
                                         "breaker": GatewayPolicy(retry=scenario.policy, breaker=BreakerPolicy())},
                              keep_open=True)
    yield result
    for run in result.results.values():
        run.close()


def vendor_a_calls(run, status: str) -> int:
    return int(run.gateway.sql("SELECT count(*) AS n FROM provider_call_events WHERE provider = 'vendorA' "
                               "AND status = ? AND created_at >= ? AND created_at < ?", [status, *OUTAGE]).n[0])


def test_with_a_breaker_the_outage_wastes_far_fewer_calls_and_shows_the_skips(comparison):
    without, with_breaker = comparison.results["no breaker"], comparison.results["breaker"]
    assert vendor_a_calls(without, "failed") > 200
    assert vendor_a_calls(with_breaker, "failed") < vendor_a_calls(without, "failed") / 3
    assert vendor_a_calls(with_breaker, "skipped") > 50
    assert vendor_a_calls(without, "skipped") == 0
    assert without.gateway.sql("SELECT count(*) AS n FROM breaker_transitions").n[0] == 0


def test_the_comparison_runs_the_same_traffic_and_tables_the_breaker(comparison):
    assert comparison.traffic_identical()
    table = comparison.table.set_index("policy")
    assert (table.loc["no breaker", "breaker"], table.loc["breaker", "breaker"]) == ("none", "breaker 5x/50% 30s")
    assert table.loc["breaker", "wasted_calls"] < table.loc["no breaker", "wasted_calls"] / 2
    assert table.loc["breaker", "latency_p95_ms"] < table.loc["no breaker", "latency_p95_ms"]
    assert table.loc["breaker", "replies"] == table.loc["no breaker", "replies"]  # vendorB answers either way
    assert comparison.results["breaker"].summary()["policy"] == "3x 2s fallback + breaker 5x/50% 30s"


def test_each_gateway_instance_learns_of_the_outage_with_its_own_breaker(comparison):
    run = comparison.results["breaker"]
    first = run.gateway.sql("""SELECT gateway_id, min(created_at) AS opened FROM breaker_transitions
                               WHERE to_state = 'open' GROUP BY gateway_id""")
    assert len(first) == run.scenario.gateways == 2
    assert (first.opened >= OUTAGE[0]).all()
    sequences = run.gateway.sql("SELECT gateway_id, list(seq ORDER BY seq) AS seqs FROM breaker_transitions "
                                "GROUP BY gateway_id")
    assert all(list(s) == list(range(1, len(s) + 1)) for s in sequences.seqs)  # each instance numbers its own


def test_the_same_seed_gives_the_same_database_with_a_breaker(tmp_path):
    scenario = small_outage(breaker={"failure_threshold": 3, "cooldown_s": 20})
    one = simulate(scenario, tmp_path / "one.duckdb")
    two = simulate(scenario, tmp_path / "two.duckdb", workers=2)  # the instances in processes of their own
    plain = simulate(scenario.model_copy(update={"breaker": None}))
    assert one.database_digest == two.database_digest
    assert one.rows.equals(two.rows)
    assert one.traffic_digest == plain.traffic_digest and one.database_digest != plain.database_digest


def test_a_scenario_states_its_breaker_and_a_bad_one_is_a_scenario_error():
    scenario = small_outage(breaker={"failure_threshold": 3, "when_all_open": "fail_fast"})
    assert scenario.breaker == BreakerPolicy(failure_threshold=3, when_all_open="fail_fast")
    assert small_outage().breaker is None
    with pytest.raises(ScenarioError, match=r"breaker\.cooldown_s"):
        small_outage(breaker={"cooldown_s": 0})


def test_the_breaker_grid_starts_without_a_breaker():
    grid = breaker_grid(cooldown_s=(10, 30), failure_threshold=(3,))
    assert list(grid) == ["no breaker", "breaker 3x 10s", "breaker 3x 30s"]
    assert grid["no breaker"].breaker is None
    assert grid["breaker 3x 30s"].breaker == BreakerPolicy(failure_threshold=3, cooldown_s=30)

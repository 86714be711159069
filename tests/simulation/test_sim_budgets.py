"""Budgets in a scenario: set on the tenant, shared by the gateway instances, and never overspent in the merged
database, whatever the number of instances or processes; alerts found once per month on the merged rows."""

from __future__ import annotations

from decimal import Decimal

import duckdb
import pytest
from conftest import small_scenario

from vbgateway.errors import ScenarioError
from vbgateway.simulation import simulate

LIMIT = Decimal("0.05")  # a fifth or so of what "Sim Tenant 01" would spend in the run unbounded
MONTHLY = """SELECT t.name, strftime(timezone('UTC', u.created_at), '%Y-%m') AS month, sum(u.cost_usd) AS spent
             FROM usage_events u JOIN tenants t ON t.id = u.tenant_id GROUP BY ALL ORDER BY ALL"""


def budgeted(gateways: int = 2, **changes: object):
    """The small scenario across a month's end, "Sim Tenant 01" on a budget, "Sim Tenant 02" without one."""
    tenants = [{"name": "Sim Tenant 01", "budget": {"monthly_usd": str(LIMIT), "alert_at": [0.25, 0.5, 0.99]}},
               {"name": "Sim Tenant 02"}]
    agents = [{"name": "Support", "primary": "vendorA", "fallback": "vendorB", "max_output_tokens": 64, "share": 0.7},
              {"name": "Sales", "primary": "vendorB", "fallback": "vendorA", "max_output_tokens": 64, "share": 0.3}]
    return small_scenario(name="budgeted", start="2026-03-31T21:00:00Z", duration="6h", tenants=tenants,
                          agents=agents, gateways=gateways, **changes)


def monthly_spend(path) -> dict[tuple[str, str], Decimal]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {(name, month): Decimal(spent) for name, month, spent in con.execute(MONTHLY).fetchall()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("budgets") / "sim.duckdb"
    return simulate(budgeted(), path), path


def test_the_merged_database_shows_no_month_over_the_budget(run):
    _, path = run
    spend = monthly_spend(path)
    assert {month for _, month in spend} == {"2026-03", "2026-04"}  # the run crosses a month's end
    for month in ("2026-03", "2026-04"):
        assert spend[("Sim Tenant 01", month)] <= LIMIT
    assert spend[("Sim Tenant 02", "2026-04")] > 2 * LIMIT  # the same traffic, unbudgeted


def test_refused_messages_are_failed_rows_that_called_no_provider(run):
    result, _ = run
    rows = result.rows[result.rows.tenant == "Sim Tenant 01"]
    refused = rows[(rows.outcome == "failed") & (rows.attempts == 0)]
    assert len(refused) > len(rows) / 3  # the budget did bind
    assert (result.rows[result.rows.tenant == "Sim Tenant 02"].attempts >= 1).all()


def test_the_budget_is_stored_and_its_alerts_are_recorded_once_per_month(run):
    _, path = run
    with duckdb.connect(str(path), read_only=True) as con:
        [(limit,)] = con.execute("SELECT monthly_usd FROM budgets").fetchall()
        alerts = con.execute("SELECT month, threshold, spent_usd, monthly_usd FROM budget_alerts "
                             "ORDER BY month, threshold").fetchall()
    assert Decimal(limit) == LIMIT
    assert [(m, Decimal(t)) for m, t, _, _ in alerts][:2] == [("2026-03", Decimal("0.25")), ("2026-03", Decimal("0.5"))]
    assert {m for m, _, _, _ in alerts} == {"2026-03", "2026-04"}
    for _, threshold, spent, monthly in alerts:
        assert Decimal(threshold) * LIMIT <= Decimal(spent) <= LIMIT and Decimal(monthly) == LIMIT


def test_a_budgeted_run_is_the_same_twice_and_in_parallel_processes(run, tmp_path):
    result, _ = run
    again = simulate(budgeted(), tmp_path / "again.duckdb")
    parallel = simulate(budgeted(), tmp_path / "parallel.duckdb", workers=2, progress=lambda *_: None)
    assert result.database_digest == again.database_digest == parallel.database_digest
    assert result.rows.equals(again.rows) and result.rows.equals(parallel.rows)
    assert monthly_spend(tmp_path / "again.duckdb") == monthly_spend(tmp_path / "parallel.duckdb")


def budget_alerts(path) -> list[tuple[object, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT * FROM budget_alerts ORDER BY ALL").fetchall()


def test_a_budgeted_run_on_a_dask_cluster_is_the_local_run(run, tmp_path):
    """The cluster path gives each task its instance's share and finds the alerts on the merged rows too."""
    result, path = run
    remote = simulate(budgeted(), tmp_path / "dask.duckdb", cluster="local:1")
    assert remote.database_digest == result.database_digest and remote.rows.equals(result.rows)
    assert monthly_spend(tmp_path / "dask.duckdb") == monthly_spend(path)
    assert budget_alerts(tmp_path / "dask.duckdb") == budget_alerts(path) != []


@pytest.mark.parametrize("gateways", [1, 3])
def test_any_number_of_instances_stays_within_the_budget(tmp_path, gateways):
    path = tmp_path / "sim.duckdb"
    simulate(budgeted(gateways), path)
    spend = monthly_spend(path)
    assert all(spend[("Sim Tenant 01", month)] <= LIMIT for month in ("2026-03", "2026-04"))
    if gateways == 1:  # one instance has the whole budget: all but less than a request's reservation is used
        assert spend[("Sim Tenant 01", "2026-04")] >= LIMIT * Decimal("0.9")


def test_a_second_run_into_the_same_database_only_spends_what_the_first_left(tmp_path):
    path = tmp_path / "sim.duckdb"
    simulate(budgeted(), path)
    simulate(budgeted(seed=6), path)
    spend = monthly_spend(path)
    assert all(spend[("Sim Tenant 01", month)] <= LIMIT for month in ("2026-03", "2026-04"))


@pytest.mark.parametrize("budget, field", [
    ({"monthly_usd": -5}, "monthly_usd"),
    ({"monthly_usd": "lots"}, "monthly_usd"),
    ({"monthly_usd": 5, "alert_at": [0.8, 0.5]}, "alert_at"),
    ({"monthly_usd": 5, "alert_at": [2]}, "alert_at"),
    ({"monthly_usd": 5, "per_day": 1}, "per_day"),
    ({}, "monthly_usd"),
])
def test_a_bad_budget_in_a_scenario_names_its_field(budget, field):
    with pytest.raises(ScenarioError) as info:
        small_scenario(tenants=[{"name": "Acme", "budget": budget}])
    assert any(e["field"].startswith("tenants.") and e["field"].endswith(f".0.budget.{field}")
               for e in info.value.details["errors"]), info.value.details

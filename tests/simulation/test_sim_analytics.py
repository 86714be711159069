"""The analytics functions (and so the reports) read simulation output unchanged."""

from __future__ import annotations

from decimal import Decimal

from vbgateway import Gateway, analytics
from vbgateway.simulation import reprice, simulate


def test_rollup_of_the_simulated_period_matches_the_rows(tmp_path, scenario):
    db = tmp_path / "sim.duckdb"
    result = simulate(scenario, db)
    ok = result.rows[result.rows.outcome == "ok"]
    with Gateway.open(db) as gw:
        day = scenario.start.date()
        rollup = analytics.rollup(gw, None, day, day)
        tenant_id = result.tenant_ids[result.rows.tenant.cat.categories[0]]
        events = analytics.events(gw, tenant_id, day, day, limit=5)
    assert rollup.totals["messages"] == 2 * len(ok)
    assert rollup.totals["cost_usd"] == Decimal(int(ok.cost_units.sum())).scaleb(-10)
    assert rollup.totals["tokens_in"] == int(ok.tokens_in.sum())
    assert set(rollup.by_provider.provider) <= {"vendorA", "vendorB"}
    assert len(events) == 5 and (events.tenant_id == tenant_id).all()


def test_what_if_pricing_per_tenant_from_the_run_and_from_the_database_agree(tmp_path, scenario):
    db = tmp_path / "sim.duckdb"
    result = simulate(scenario, db)
    new_prices = {"vendorA": "0.004", "vendorB": "0.003"}  # vendorA doubles
    from_rows = reprice(result, new_prices)
    from_db = reprice(db, new_prices)
    assert from_rows.equals(from_db)
    ok = result.rows[result.rows.outcome == "ok"]
    a_tokens = ok[ok.vendor_used == "vendorA"]
    expected = Decimal(int(a_tokens.tokens_in.sum() + a_tokens.tokens_out.sum())) * Decimal("0.002") / 1000
    total = from_rows.set_index("tenant").loc["(all tenants)"]
    assert total.difference_usd == expected
    assert total.whatif_cost_usd - total.cost_usd == expected
    assert len(from_rows) == 3  # two tenants and the total

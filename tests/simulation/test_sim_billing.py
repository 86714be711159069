"""Client retries reuse idempotency keys: every successful request is billed exactly once."""

from __future__ import annotations

from decimal import Decimal

from vbgateway.simulation import simulate
from vbgateway.simulation.workload import Workload


def test_usage_events_equal_distinct_successful_requests_under_client_retries(tmp_path, make_scenario):
    scenario = make_scenario(
        traffic={"sessions_per_hour": 30, "daily_profile": {"hourly": [1.0] * 24},
                 "client_retry_share": 0.5, "idempotency_share": 0.3,
                 "client_retry_after_s": [0.05, 3.0], "voice_share": 0.2},
        vendors={"vendorA": {"failure_rate": 0.3}})
    result = simulate(scenario, tmp_path / "sim.duckdb", keep_open=True)
    try:
        gw = result.gateway
        usage = gw.sql("SELECT request_id, cost_usd FROM usage_events")
        keys = gw.sql("SELECT count(*) AS n FROM idempotency_records")
        events = gw.sql("SELECT count(DISTINCT request_id) AS n FROM provider_call_events")
    finally:
        result.close()
    rows = result.rows
    ok = rows[rows.outcome == "ok"]
    retried = rows[rows.client_retry]
    assert len(retried) > 100 and retried.replayed.sum() > 50  # the retries really were duplicates
    assert len(usage) == len(ok) == ok.request_id.nunique()
    assert usage.request_id.is_unique
    assert set(usage.request_id) == set(ok.request_id)
    assert sum(usage.cost_usd, Decimal(0)) == Decimal(int(rows.cost_units.sum())).scaleb(-10)
    assert int(keys.n[0]) == int(ok.message.isin(_keyed_messages(scenario)).sum())
    assert int(events.n[0]) >= len(rows)


def _keyed_messages(scenario):
    """Messages the client sent with an idempotency key (retried ones, and those chosen for a key)."""
    keyed = set()
    for plans in Workload(scenario).sessions():
        for plan in plans:
            keyed.update(m[0] for m in plan.messages if m[4] or m[5])
    return keyed

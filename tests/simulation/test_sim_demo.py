"""The demo month: the seeded demo tenants get simulated history in the same database."""

from __future__ import annotations

from datetime import UTC, datetime

from vbgateway import Gateway
from vbgateway.seed import DEMO_AGENTS
from vbgateway.simulation import simulate_demo_month


def test_demo_history_lands_on_the_seeded_tenants_and_agents(tmp_path):
    db = tmp_path / "demo.duckdb"
    start = datetime(2026, 2, 1, tzinfo=UTC)
    result = simulate_demo_month(db, days=2, start=start, sessions_per_hour=4)
    assert result.summary()["replies"] > 50
    with Gateway.open(db) as gw:
        tenants = gw.sql("SELECT name FROM tenants ORDER BY name").name.tolist()
        agents = gw.sql("SELECT count(*) AS n FROM agents").n[0]
        per_tenant = gw.sql("""SELECT t.name, count(*) AS n FROM usage_events u JOIN tenants t ON t.id = u.tenant_id
                               GROUP BY ALL""")
        first = gw.sql("SELECT min(created_at) AS t FROM usage_events").t[0]
    assert tenants == sorted(DEMO_AGENTS)
    assert agents == sum(len(v) for v in DEMO_AGENTS.values())
    assert set(per_tenant.name) == set(DEMO_AGENTS) and (per_tenant.n > 0).all()
    assert first >= start

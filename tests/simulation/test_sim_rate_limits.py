"""Rate limits in a scenario: set on the tenants, enforced on virtual time, refusals countable afterwards."""

from __future__ import annotations

import pytest

from vbgateway.errors import ScenarioError
from vbgateway.simulation import simulate

RPM = 3


@pytest.fixture(scope="module")
def limited(tmp_path_factory, make_scenario):
    """Two tenants for five hours; Acme may send RPM messages a minute, Globex has no limit."""
    scenario = make_scenario(tenants=[{"name": "Acme", "rate_limit": {"requests_per_minute": RPM}},
                                       {"name": "Globex"}])
    result = simulate(scenario, tmp_path_factory.mktemp("limits") / "a.duckdb", keep_open=True)
    yield scenario, result
    result.close()


def test_the_limited_tenant_is_refused_and_the_other_is_not(limited):
    scenario, result = limited
    refusals = result.gateway.sql("""SELECT t.name, r.code, r.key_id, r.session_id, r.created_at, r.details
                                     FROM request_refusals r JOIN tenants t ON t.id = r.tenant_id""")
    assert len(refusals) > 0
    assert set(refusals["name"]) == {"Acme"} and set(refusals["code"]) == {"RATE_LIMIT_EXCEEDED"}
    assert refusals["key_id"].isna().all() and refusals["session_id"].notna().all()  # the simulated clients: no key
    assert refusals["created_at"].min() >= scenario.start  # on the scenario's clock, not the wall's
    outcomes = result.rows.groupby("tenant", observed=True)["outcome"].value_counts().unstack(fill_value=0)
    assert outcomes.loc["Acme", "failed"] > 0
    assert outcomes.loc["Acme", "ok"] < outcomes.loc["Globex", "ok"]


def test_the_deployment_admits_no_more_than_the_limit_allows(limited):
    scenario, result = limited
    replies = result.gateway.sql("""SELECT count(*) AS n FROM usage_events u JOIN tenants t ON t.id = u.tenant_id
                                    WHERE t.name = 'Acme'""")["n"][0]
    minutes = scenario.duration.total_seconds() / 60 + 10  # sessions begun late run a little over
    # Each of the scenario's gateways enforces its share (RPM / gateways) with a minute's burst.
    assert 0 < replies <= RPM * (1 + minutes)
    assert scenario.gateways == 2


def test_the_limit_is_stored_on_the_tenant(limited):
    _, result = limited
    stored = result.gateway.sql("""SELECT t.name, l.kind, l.requests_per_minute, l.tokens_per_minute IS NULL AS no_tpm
                                   FROM rate_limits l JOIN tenants t ON t.id = l.subject_id""")
    assert stored.values.tolist() == [["Acme", "tenant", RPM, True]]


def test_a_seeded_run_with_limits_is_deterministic(tmp_path, limited):
    scenario, first = limited
    second = simulate(scenario, tmp_path / "b.duckdb", keep_open=True)
    try:
        assert second.rows.equals(first.rows)
        count = "SELECT count(*) AS n, sum(hash(details)) AS h FROM request_refusals"
        assert second.gateway.sql(count).values.tolist() == first.gateway.sql(count).values.tolist()
    finally:
        second.close()


def test_a_scenario_wide_limit_applies_to_every_generated_tenant(make_scenario):
    scenario = make_scenario(tenants=3, rate_limit={"requests_per_minute": 10, "tokens_per_minute": 50_000})
    assert {(p.rate_limit.requests_per_minute, p.rate_limit.tokens_per_minute) for p in scenario.tenant_plans()} == {
        (10, 50_000)}
    own = make_scenario(tenants=[{"name": "A", "rate_limit": {"requests_per_minute": 1}}, {"name": "B"}],
                         rate_limit={"requests_per_minute": 10})
    assert [p.rate_limit.requests_per_minute for p in own.tenant_plans()] == [1, 10]


@pytest.mark.parametrize("limit", [{"requests_per_minute": 0}, {"tokens_per_minute": -5}, {"rpm": 5}])
def test_a_bad_rate_limit_is_an_invalid_scenario(make_scenario, limit):
    with pytest.raises(ScenarioError) as info:
        make_scenario(tenants=[{"name": "A", "rate_limit": limit}])
    assert info.value.code == "INVALID_SCENARIO" and "rate_limit" in str(info.value)

"""Policies compared on identical traffic; a failing vendor makes their outcomes differ."""

from __future__ import annotations

import pytest

from vbgateway import RetryPolicy
from vbgateway.simulation import compare_policies, policy_grid
from vbgateway.simulation.charts import policy_comparison_chart, policy_timeline_chart


@pytest.fixture(scope="module")
def comparison(outage_scenario):
    policies = {"3x fallback": RetryPolicy(attempts=3, fallback=True),
                "1x no fallback": RetryPolicy(attempts=1, fallback=False, timeout_s=1.0)}
    result = compare_policies(outage_scenario, policies, keep_open=True)
    yield result
    for run in result.results.values():
        run.close()


def _user_contents(run):
    by_request = dict(run.gateway.sql("SELECT request_id, content FROM messages WHERE role = 'user'")
                      .itertuples(index=False, name=None))
    return {m: by_request[r] for m, r in zip(run.rows.message, run.rows.request_id) if r in by_request}


def test_every_policy_sees_the_same_messages(comparison):
    runs = list(comparison.results.values())
    assert comparison.traffic_identical()
    assert len({len(r.rows) for r in runs}) == 1
    for column in ("message", "session", "tenant", "channel", "client_retry"):
        assert runs[0].rows[column].tolist() == runs[1].rows[column].tolist(), column
    first, second = (_user_contents(r) for r in runs)
    shared = first.keys() & second.keys()
    assert len(shared) > 100
    assert all(first[m] == second[m] for m in shared)


def test_outcomes_differ_when_a_vendor_fails(comparison):
    table = comparison.table.set_index("policy")
    assert table.loc["3x fallback", "success_rate"] > table.loc["1x no fallback", "success_rate"]
    assert table.loc["1x no fallback", "fallback_rate"] == 0
    assert table.loc["3x fallback", "fallback_rate"] > 0
    assert list(comparison.table.columns[:4]) == ["policy", "attempts", "timeout_s", "fallback"]


def test_comparison_charts_build(comparison):
    assert policy_comparison_chart(comparison).to_dict()["hconcat"]
    assert policy_timeline_chart(comparison).to_dict()["mark"]


def test_the_default_grid_is_attempts_by_fallback_by_timeout():
    grid = policy_grid()
    assert len(grid) == 12
    assert grid["2x 1s no fallback"] == RetryPolicy(attempts=2, fallback=False, timeout_s=1.0)

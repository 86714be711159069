"""Scenario files: the shipped examples load; bad scenarios fail early with clear messages."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from vbgateway.errors import ValidationError
from vbgateway.simulation import Scenario, ScenarioError, load_scenario
from vbgateway.simulation.examples import example_names, example_path
from vbgateway.simulation.workload import Workload

EXAMPLES = Path(__file__).resolve().parents[2] / "vbgateway" / "simulation" / "scenarios"
EXAMPLES_NAMES = ["normal_week", "rate_limit_storm", "vendor_a_outage"]


@pytest.mark.parametrize("name", ["normal_week", "vendor_a_outage", "rate_limit_storm"])
def test_each_example_scenario_loads_from_yaml(name):
    scenario = load_scenario(EXAMPLES / f"{name}.yaml")
    assert scenario.name == name
    assert scenario.tenant_plans() and scenario.duration > timedelta(0)


def test_the_examples_say_what_they_are_about():
    assert load_scenario(EXAMPLES / "normal_week.yaml").duration == timedelta(days=7)
    outage = load_scenario(EXAMPLES / "vendor_a_outage.yaml").incidents
    assert [(i.vendor, i.kind) for i in outage] == [("vendorA", "outage")]
    storm = load_scenario(EXAMPLES / "rate_limit_storm.yaml").incidents
    assert [(i.vendor, i.kind) for i in storm] == [("vendorB", "rate_limit_storm"), ("vendorB", "latency")]


@pytest.mark.parametrize("name", ["normal_week", "vendor_a_outage", "rate_limit_storm"])
def test_an_example_loads_by_its_name_from_any_working_directory(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_scenario(name) == load_scenario(EXAMPLES / f"{name}.yaml")
    assert example_path(name).parent == EXAMPLES and example_names() == sorted(EXAMPLES_NAMES)


def test_a_file_in_the_working_directory_wins_over_an_example_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "normal_week").write_text("name: mine\nduration: 1h\ntenants: 1\n")
    assert load_scenario("normal_week").name == "mine"


def test_an_unknown_name_is_refused_with_a_code_and_the_known_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ScenarioError) as info:
        load_scenario("normal_weak")
    assert info.value.code == "SCENARIO_NOT_FOUND" and info.value.details["known"] == sorted(EXAMPLES_NAMES)
    assert all(name in info.value.message for name in EXAMPLES_NAMES)


def test_a_missing_file_path_is_still_a_read_error_not_a_name(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        load_scenario(str(tmp_path / "normal_week.yaml"))


def test_json_scenarios_load_too(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"name": "j", "duration": "2h", "tenants": 1}))
    assert load_scenario(path).duration == timedelta(hours=2)


@pytest.mark.parametrize("changes, words", [
    ({"start": "2026-03-02T00:00:00Z", "end": "2026-03-01T00:00:00Z"}, ["end", "must be after start"]),
    ({"traffic": {"sessions_per_hour": -3}}, ["traffic.sessions_per_hour", "greater than or equal to 0"]),
    ({"traffic": {"voice_share": 1.5}}, ["traffic.voice_share"]),
    ({"agents": [{"name": "X", "primary": "vendorC"}]}, ["unknown vendor 'vendorC'", "known: vendorA, vendorB"]),
    ({"vendors": {"vendorZ": {"failure_rate": 0.1}}}, ["unknown vendor(s) vendorZ"]),
    ({"incidents": [{"vendor": "vendorQ", "kind": "outage", "start": "1h", "end": "2h"}]}, ["unknown vendor 'vendorQ'"]),
    ({"incidents": [{"vendor": "vendorA", "kind": "outage", "start": "3h", "end": "2h"}]}, ["ends before it starts"]),
    ({"incidents": [{"vendor": "vendorA", "kind": "outage", "start": "30h", "end": "31h"}]}, ["outside the scenario"]),
    ({"policy": {"attempts": 0}}, ["policy.attempts"]),
    ({"start": "2026-03-02T00:00:00"}, ["timezone"]),
    ({"duration": "soon"}, ["duration"]),
    ({"colour": "blue"}, ["colour", "Extra inputs are not permitted"]),
])
def test_invalid_scenarios_are_refused_with_a_message_naming_the_problem(changes, words):
    with pytest.raises(ScenarioError) as caught:
        Scenario.parse({"duration": "1d", **changes})
    assert isinstance(caught.value, ValidationError) and caught.value.code == "INVALID_SCENARIO"
    for word in words:
        assert word in str(caught.value), str(caught.value)
    assert caught.value.details["errors"]


def test_unreadable_and_malformed_files_are_scenario_errors(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        load_scenario(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ScenarioError, match="a scenario is a mapping"):
        load_scenario(listed)


def test_traffic_follows_the_daily_profile_and_is_reproducible():
    scenario = Scenario.parse({"start": "2026-03-02T00:00:00Z", "duration": "7d", "tenants": 1,
                               "traffic": {"sessions_per_hour": 50}})
    counts = [len(hour) for hour in Workload(scenario).sessions()]
    monday_busy, monday_night, saturday_busy = sum(counts[9:18]), sum(counts[0:6]), sum(counts[5 * 24 + 9:5 * 24 + 18])
    assert monday_busy > 5 * monday_night and monday_busy > 2 * saturday_busy
    again = Workload(scenario)
    assert [len(h) for h in again.sessions()] == counts
    other_policy = Workload(scenario.with_policy(scenario.policy.model_copy(update={"attempts": 1})))
    list(other_policy.sessions())
    assert again.digest == other_policy.digest

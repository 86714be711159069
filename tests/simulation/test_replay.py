"""Replays: recorded traffic sent again through the real gateway on virtual time, under another policy or prices."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vbgateway import BreakerPolicy, Gateway, GatewayError, RetryPolicy
from vbgateway.simulation import load_scenario, simulate
from vbgateway.simulation.replay import observed_sessions, replay

ROOT = Path(__file__).resolve().parents[2]
DAY = ("2026-03-03", "2026-03-03")


@pytest.fixture(scope="module")
def outage_day(tmp_path_factory) -> Path:
    example = load_scenario("vendor_a_outage")
    scenario = example.model_copy(update={"traffic": example.traffic.model_copy(update={"sessions_per_hour": 20.0})})
    db = tmp_path_factory.mktemp("replay") / "outage.duckdb"
    simulate(scenario, db=db)
    return db


def test_the_replay_sends_every_recorded_message_at_its_time(outage_day: Path):
    with Gateway.open_reader(outage_day) as gw:
        lower = gw.sql("SELECT min(created_at) AS t FROM sessions").t[0].to_pydatetime()
        sessions = observed_sessions(gw, lower.replace(hour=0), lower.replace(hour=0).replace(day=4))
        requests = int(gw.sql("SELECT count(DISTINCT request_id) AS n FROM provider_call_events").n[0])
        stored = int(gw.sql("SELECT count(*) AS n FROM sessions").n[0])
    assert len(sessions) == stored and sum(len(s.messages) for s in sessions) == requests
    assert all(text for s in sessions for _, text, _ in s.messages)
    assert all(a <= b for s in sessions for (a, _, _), (b, _, _) in zip(s.messages, s.messages[1:]))


def test_the_same_policy_gives_the_same_messages_and_about_the_same_cost(outage_day: Path):
    result = replay(outage_day, *DAY)
    totals = result.totals
    assert totals["messages"]["replayed"] == totals["messages"]["observed"]
    assert totals["cost_usd"]["replayed"] == pytest.approx(totals["cost_usd"]["observed"], rel=0.03)
    assert totals["fallback_rate"]["replayed"] == pytest.approx(totals["fallback_rate"]["observed"], abs=0.02)
    assert result.vendors.incidents and result.vendors.incidents[0].kind == "outage"


def test_without_retries_or_fallback_the_outage_day_fails_many_more_replies(outage_day: Path):
    same = replay(outage_day, *DAY).totals
    bare = replay(outage_day, *DAY, policy=RetryPolicy(attempts=1, fallback=False)).totals
    assert bare["failed_replies"]["replayed"] > same["failed_replies"]["replayed"] + 100
    assert bare["fallback_rate"]["replayed"] == 0 < same["fallback_rate"]["replayed"]
    assert bare["cost_usd"]["replayed"] < same["cost_usd"]["replayed"]


def test_other_prices_change_the_cost_and_nothing_else(outage_day: Path):
    same = replay(outage_day, *DAY, keep_open=True)
    dearer = replay(outage_day, *DAY, prices={"vendorA": "0.004", "vendorB": "0.006"}, keep_open=True)
    try:
        assert dearer.totals["cost_usd"]["replayed"] == pytest.approx(2 * same.totals["cost_usd"]["replayed"],
                                                                      rel=1e-9)
        assert dearer.totals["messages"] == same.totals["messages"]
        assert dearer.gateway is not None and same.gateway is not None
        assert (dearer.gateway.sql("SELECT count(*) AS n FROM usage_events").n[0]
                == same.gateway.sql("SELECT count(*) AS n FROM usage_events").n[0])
    finally:
        same.close()
        dearer.close()


def test_a_breaker_replays_the_outage_with_skips_and_a_bad_one_is_refused(outage_day: Path):
    plain = replay(outage_day, *DAY, keep_open=True)
    guarded = replay(outage_day, *DAY, breaker=BreakerPolicy(failure_threshold=3, cooldown_s=30), keep_open=True)
    try:
        assert guarded.totals["messages"]["replayed"] == guarded.totals["messages"]["observed"]
        assert plain.gateway is not None and guarded.gateway is not None
        skipped = guarded.gateway.sql("SELECT count(*) AS n FROM provider_call_events WHERE status = 'skipped'").n[0]
        opened = guarded.gateway.sql("SELECT count(*) AS n FROM breaker_transitions WHERE to_state = 'open'").n[0]
        assert skipped > 0 and opened > 0
        assert plain.gateway.sql("SELECT count(*) AS n FROM breaker_transitions").n[0] == 0
    finally:
        plain.close()
        guarded.close()
    for bad in (object(), {"failure_threshold": 0}):
        with pytest.raises(GatewayError) as info:
            replay(outage_day, *DAY, breaker=bad)
        assert info.value.code == "VALIDATION_ERROR" and "breaker" in info.value.message


def test_the_command_line_prints_both_runs(outage_day: Path):
    done = subprocess.run([sys.executable, "-m", "vbgateway.cli", "replay", "--db", str(outage_day), "--from", DAY[0],
                           "--to", DAY[1], "--policy", '{"attempts": 1, "fallback": false}', "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    totals = json.loads(done.stdout.strip().splitlines()[-1])
    assert totals["failed_replies"]["replayed"] > totals["failed_replies"]["observed"]
    bad = subprocess.run([sys.executable, "-m", "vbgateway.cli", "replay", "--db", str(outage_day), "--from", DAY[0],
                          "--to", DAY[1], "--policy", '{"attempts": 0}'], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and "VALIDATION_ERROR" in bad.stderr

"""What the analytics make of circuit breakers: skips are no tries, and open time adds up per provider."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vbgateway import BreakerPolicy, Gateway, RetryPolicy, VirtualClock, analytics, charts
from vbgateway.providers import VendorA, VendorB

START = datetime(2026, 1, 1, 9, tzinfo=UTC)
STEADY = {"latency_ms": (100, 100), "spike_rate": 0.0, "rate_limit_rate": 0.0}
DAY = ("2026-01-01", "2026-01-01")


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    """vendorA down for the first requests (its circuit opens after 2 failures, 60 s cooldown), then healthy.

    Timeline: 2 requests fail over to vendorB and open the circuit, 3 are
    skipped straight to vendorB, then 61 s later vendorA is back and a
    probe closes the circuit; 2 more requests go to vendorA.
    """
    clock = VirtualClock(start=START)
    a, b = VendorA(seed=1, failure_rate=1.0, **STEADY), VendorB(seed=2, failure_rate=0.0, **STEADY)
    gw = Gateway.open(tmp_path_factory.mktemp("an") / "gw.duckdb", clock=clock, providers={"vendorA": a, "vendorB": b},
                      retry=RetryPolicy(attempts=1), breaker=BreakerPolicy(failure_threshold=2, cooldown_s=60), seed=9)
    _, key = gw.create_tenant("Analytics Inc")
    tenant = gw.connect(key)
    agent = tenant.create_agent(name="R", primary_provider="vendorA", fallback_provider="vendorB",
                                system_prompt="You are helpful.")
    session = tenant.create_session(agent.id)
    for _ in range(5):
        clock.run(tenant.send_message(session.id, "Hi"))
    opened = gw.breaker_states()["vendorA"].since
    clock.advance(61)
    a.profile = b.profile
    for _ in range(3):
        clock.run(tenant.send_message(session.id, "Back?"))
    yield gw, opened
    gw.close()


def test_skipped_providers_count_as_skips_not_tries(outage):
    gw, _ = outage
    rel = analytics.reliability(gw, None, *DAY)
    s = rel.summary
    assert (s["requests"], s["replies"], s["failed_requests"]) == (8, 8, 0)
    assert (s["attempts"], s["skipped_attempts"], s["retry_tax_attempts"]) == (2 + 5 + 3, 3, 2)
    assert s["fallback_rate"] == pytest.approx(5 / 8)  # the skipped requests were answered by the fallback
    assert s["retry_rate"] == pytest.approx(2 / 8)  # a skip is no second try
    by = rel.by_provider.set_index("provider")
    assert (by.loc["vendorA", "attempts"], by.loc["vendorA", "skipped"], by.loc["vendorB", "skipped"]) == (5, 3, 0)
    assert "CIRCUIT_OPEN" not in set(rel.error_codes.error_code)


def test_latency_leaves_skips_out(outage):
    gw, _ = outage
    lat = analytics.latency(gw, None, *DAY).set_index("provider")
    assert lat.loc["vendorA", "attempts"] == 5 and lat.loc["vendorA", "p50_ms"] == 100.0


def test_transitions_are_listed_in_time_order(outage):
    gw, opened = outage
    rows = analytics.breaker_transitions(gw, *DAY)
    assert list(zip(rows.from_state, rows.to_state, rows.reason, strict=True)) == [
        ("closed", "open", "consecutive_failures"), ("open", "half_open", "cooldown_elapsed"),
        ("half_open", "closed", "probe_succeeded")]
    assert rows.created_at[0].to_pydatetime() == opened
    assert list(analytics.breaker_transitions(gw, limit=2).seq) == [2, 3]
    assert analytics.breaker_transitions(gw, "2026-01-02", "2026-01-03").empty


def test_open_time_is_the_cooldown_and_half_open_time_lasts_until_the_probe(outage):
    gw, _ = outage
    rows = analytics.breaker_transitions(gw)
    probe_done = (rows.created_at[2] - rows.created_at[1]).total_seconds()
    table = analytics.breaker_open_time(gw, *DAY).set_index("provider")
    assert list(table.index) == ["vendorA"]
    assert table.loc["vendorA", "opened"] == 1
    assert table.loc["vendorA", "open_s"] == pytest.approx(60.0)
    assert table.loc["vendorA", "half_open_s"] == pytest.approx(probe_done)
    assert table.loc["vendorA", "not_closed_s"] == pytest.approx(60.0 + probe_done)


def test_a_circuit_still_open_counts_until_the_given_moment_and_never_past_the_range(tmp_path):
    clock = VirtualClock(start=datetime(2026, 1, 1, 23, 0, tzinfo=UTC))
    providers = {"vendorA": VendorA(seed=1, failure_rate=1.0, **STEADY), "vendorB": VendorB(seed=2, **STEADY)}
    with Gateway.open(tmp_path / "gw.duckdb", clock=clock, providers=providers, retry=RetryPolicy(attempts=1),
                      breaker=BreakerPolicy(failure_threshold=1, cooldown_s=7200), seed=3) as gw:
        _, key = gw.create_tenant("Still Open Inc")
        tenant = gw.connect(key)
        agent = tenant.create_agent(name="R", primary_provider="vendorA", fallback_provider="vendorB",
                                    system_prompt="You are helpful.")
        clock.run(tenant.send_message(tenant.create_session(agent.id).id, "Hi"))
        opened = gw.breaker_states()["vendorA"].since
        last_call = gw.sql("SELECT max(created_at) AS t FROM provider_call_events").t[0].to_pydatetime()

        def open_s(*days: str, until: object = None) -> float:
            return float(analytics.breaker_open_time(gw, *days, until=until).set_index("provider").open_s["vendorA"])

        assert open_s(*DAY, until=opened + timedelta(seconds=600)) == pytest.approx(600.0)
        assert open_s(*DAY) == pytest.approx((last_call - opened).total_seconds())  # known until the last call
        midnight = datetime(2026, 1, 2, tzinfo=UTC)
        assert open_s(*DAY, until=midnight + timedelta(hours=5)) == pytest.approx((midnight - opened).total_seconds())
        assert open_s("2026-01-02", "2026-01-02", until=midnight + timedelta(hours=1)) == pytest.approx(3600.0)


def test_the_timeline_chart_has_a_span_per_state(outage):
    gw, _ = outage
    rows = analytics.breaker_transitions(gw)
    spans = charts.breaker_spans(rows, until=gw.now())
    assert list(spans.state) == ["open", "half_open", "closed"]
    assert spans.end[0] == spans.start[1] and spans.end.iloc[-1] == gw.now()
    spec = charts.breaker_timeline_chart(rows).to_dict()
    assert len(spec["layer"]) == 2 and "<svg" in charts.to_svg(charts.breaker_timeline_chart(rows))

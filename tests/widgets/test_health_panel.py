"""HealthPanel: breaker states and the timeline of transitions, over an embedded gateway and the local service."""

from __future__ import annotations

import dataclasses

import pytest

from vbgateway import BreakerPolicy, RetryPolicy
from vbgateway.client.service import stop_service
from vbgateway.widgets import ChatPanel, HealthPanel, LoginPanel, open_workbench


@pytest.fixture
def governed(tmp_path, clock, providers):
    """A workbench whose gateway has breakers (open after 2 failures, for 60 s); vendorA can be taken down."""
    bench = open_workbench(tmp_path / "data" / "gov.duckdb", clock=clock, providers=providers, seed=5,
                           retry=RetryPolicy(attempts=1), breaker=BreakerPolicy(failure_threshold=2, cooldown_s=60))
    yield bench
    bench.close()


@pytest.fixture
def health(governed, panels):
    panel = HealthPanel(governed.gateway)
    panels.append(panel)
    return panel


def take_down(providers, clock, bench, messages: int) -> None:
    vendor = providers["vendorA"]
    vendor.profile = dataclasses.replace(vendor.profile, failure_rate=1.0)
    client = bench.gateway.connect(bench.api_key)
    agent = next(a for a in client.list_agents() if a.primary_provider == "vendorA" and a.fallback_provider)
    session = client.create_session(agent.id)
    for i in range(messages):
        clock.run(client.send_message(session.id, f"question {i}"))


def test_all_closed_and_no_timeline_before_anything_happened(health):
    assert "circuit breakers" in health.policy.value and "2 failures in a row" in health.policy.value
    assert health.states.value.count("closed") == 2 and "open" not in health.states.value.replace("half-open", "")
    assert "No breaker has changed state yet" in health.timeline.value


def test_refresh_shows_the_open_circuit_and_draws_the_timeline(health, governed, providers, clock):
    take_down(providers, clock, governed, 3)
    health.refresh_button.click()
    assert health.data is not None
    states = health.data.states.set_index("provider")
    assert states.loc["vendorA", "state"] == "open" and states.loc["vendorB", "state"] == "closed"
    assert 'class="vb-badge err">open<' in health.states.value
    assert list(health.data.transitions.to_state) == ["open"]
    assert "<svg" in health.timeline.value and "cdn" not in health.timeline.value.lower()
    clock.advance(61)
    health.refresh()
    assert 'class="vb-badge warn">half-open<' in health.states.value


def test_a_gateway_without_breakers_says_so(bench, panels, login):
    panel = HealthPanel(login)  # a login panel leads to its gateway
    panels.append(panel)
    assert "no circuit breakers" in panel.policy.value
    assert "no breakers in this gateway" in panel.states.value


def test_over_the_local_service(tmp_path, panels):
    db = tmp_path / "data" / "served.duckdb"
    bench = open_workbench(db)
    try:
        login = LoginPanel(bench.gateway, api_key=bench.api_key)
        panel = HealthPanel(bench.gateway)
        panels.extend([login, panel])
        assert panel.data is not None and panel.data.policy is None and panel.data.states.empty
        assert "no circuit breakers" in panel.policy.value and panel.status.value == ""
    finally:
        stop_service(db)


def test_the_chat_says_when_the_primary_was_skipped_rather_than_failed(governed, providers, panels):
    login = LoginPanel(governed.gateway, api_key=governed.api_key)
    chat = ChatPanel(login)
    panels.extend([login, chat])
    providers["vendorA"].profile = dataclasses.replace(providers["vendorA"].profile, failure_rate=1.0)
    metas = []
    for _ in range(3):  # two failures open vendorA's circuit; the third message skips it
        chat.message.value = "Hi"
        chat.send_button.click()
        metas.append(chat.conversation.children[-1].value)
    assert "fallback used (vendorA failed)" in metas[0] and "2 attempts" in metas[0]
    assert "fallback used (vendorA skipped: circuit open)" in metas[2] and "attempts" not in metas[2]

"""Budgets, rate limits and circuit breakers on one send path: the order of admission, what each refusal
leaves behind, and what a failed chain gives back.

The budget is checked first, then the rate limits: a request the budget refuses is never counted by a
rate limit, and a request a rate limit refuses gives its reservation back at once. Both refusals are rows
of ``request_refusals``; neither calls a provider.
"""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from vbgateway import BreakerPolicy, Gateway, RetryPolicy, VirtualClock
from vbgateway.errors import AllProvidersFailedError, BudgetExceededError, RateLimitExceededError
from vbgateway.providers import VendorA, VendorB

START = datetime(2026, 1, 1, tzinfo=UTC)
PROMPT = "You are a careful support agent."  # 32 characters
PRICE_B = Decimal("0.003")  # the dearest of the chain: what a reservation is priced at
MAX_OUT = 40


def reservation(content: str) -> Decimal:
    return Decimal(math.ceil((len(PROMPT) + len(content)) / 4) + MAX_OUT) * PRICE_B / 1000


def vendors(failure_rate: float = 0.0) -> dict[str, object]:
    return {"vendorA": VendorA(seed=1, failure_rate=failure_rate, spike_rate=0.0, latency_ms=(50, 50)),
            "vendorB": VendorB(seed=2, failure_rate=failure_rate, rate_limit_rate=0.0, spike_rate=0.0,
                               latency_ms=(50, 50))}


class Setup:
    """A gateway on a virtual clock and a DuckDB file; one tenant with a key, one agent, one session."""

    def __init__(self, tmp_path, *, failure_rate: float = 0.0, breaker: BreakerPolicy | None = None) -> None:
        self.clock = VirtualClock(start=START, commit_window_s=0.0)
        self.gw = Gateway.open(tmp_path / "gw.duckdb", clock=self.clock, providers=vendors(failure_rate), seed=5,
                               retry=RetryPolicy(attempts=1), breaker=breaker)
        self.tenant, key = self.gw.create_tenant("Acme Corporation")
        self.client = self.gw.connect(key)
        agent = self.client.create_agent(name="Support", primary_provider="vendorA", fallback_provider="vendorB",
                                         system_prompt=PROMPT, max_output_tokens=MAX_OUT)
        self.session = self.client.create_session(agent.id).id

    def send(self, content: str = "Hello"):
        return self.clock.run(self.client.send_message(self.session, content))

    def calls(self) -> dict[str, int]:
        return {name: provider.calls for name, provider in self.gw.providers.items()}

    def refusals(self) -> list[tuple]:
        return [tuple(r) for r in self.gw.sql("SELECT code, tenant_id, key_id, session_id, request_id, details "
                                              "FROM request_refusals ORDER BY created_at").itertuples(index=False)]


@pytest.fixture
def setup(tmp_path):
    s = Setup(tmp_path)
    yield s
    s.gw.close()


def test_a_budget_refusal_is_a_request_refusals_row_with_the_error_s_details(setup):
    setup.gw.set_budget(setup.tenant.id, reservation("Hello") - Decimal("0.0000001"))
    calls = setup.calls()
    with pytest.raises(BudgetExceededError) as info:
        setup.send()
    assert setup.calls() == calls
    [(code, tenant_id, key_id, session_id, request_id, details)] = setup.refusals()
    assert (code, tenant_id, key_id, session_id) == ("BUDGET_EXCEEDED", setup.tenant.id, setup.client.key_id,
                                                     setup.session)
    assert request_id == info.value.details["requestId"] and json.loads(details) == info.value.details
    assert setup.gw.refusals.recorded == 1
    assert setup.gw.sql("SELECT count(*) AS n FROM messages")["n"][0] == 0  # nothing else was written


def test_a_request_the_budget_refuses_is_not_counted_by_the_rate_limit(setup):
    setup.gw.set_rate_limit(setup.tenant.id, requests_per_minute=1)
    setup.gw.set_budget(setup.tenant.id, reservation("Hello") - Decimal("0.0000001"))
    for _ in range(3):
        with pytest.raises(BudgetExceededError):
            setup.send()
    setup.gw.set_budget(setup.tenant.id, Decimal("1"))
    reply = setup.send()  # the minute's one request is still there: the refused ones did not take it
    assert reply.metadata.usage.cost_usd > 0
    with pytest.raises(RateLimitExceededError):
        setup.send()
    assert [r[0] for r in setup.refusals()] == ["BUDGET_EXCEEDED"] * 3 + ["RATE_LIMIT_EXCEEDED"]


def test_a_request_a_rate_limit_refuses_gives_its_reservation_back(setup):
    setup.gw.set_rate_limit(setup.tenant.id, requests_per_minute=1)
    setup.gw.set_budget(setup.tenant.id, reservation("Hello") * 3)
    first = setup.send()
    for _ in range(5):
        with pytest.raises(RateLimitExceededError):
            setup.send()
    budget = setup.gw.get_budget(setup.tenant.id)
    assert (budget.spent_usd, budget.reserved_usd) == (first.metadata.usage.cost_usd, 0)
    setup.clock.run(setup.clock.sleep(60))  # the next minute: admitted, and the budget still has room for it
    assert setup.send().metadata.usage.cost_usd > 0
    assert setup.gw.get_budget(setup.tenant.id).reserved_usd == 0


def test_a_failed_chain_under_breakers_gives_the_reservation_and_the_tokens_back(tmp_path):
    s = Setup(tmp_path, failure_rate=1.0, breaker=BreakerPolicy(failure_threshold=1, when_all_open="fail_fast"))
    try:
        s.gw.set_budget(s.tenant.id, Decimal("1"))
        s.gw.set_rate_limit(s.tenant.id, tokens_per_minute=100)  # two requests' estimates (50 tokens each)
        with pytest.raises(AllProvidersFailedError) as failed:
            s.send()
        assert failed.value.http_status == 502
        calls = s.calls()
        for _ in range(4):  # every circuit open: none called; each request's tokens come back, so none is 429
            with pytest.raises(AllProvidersFailedError) as fast:
                s.send()
            assert fast.value.http_status == 503
        assert s.calls() == calls
        budget = s.gw.get_budget(s.tenant.id)
        assert (budget.spent_usd, budget.reserved_usd) == (0, 0)
        opened = s.gw.sql("SELECT provider, to_state FROM breaker_transitions ORDER BY provider")
        assert list(zip(opened["provider"], opened["to_state"], strict=True)) == [("vendorA", "open"),
                                                                                 ("vendorB", "open")]
        assert s.refusals() == []  # failures are not refusals
    finally:
        s.gw.close()


def test_a_reply_commits_its_breaker_transition_and_its_budget_alert_in_one_record(tmp_path):
    s = Setup(tmp_path, breaker=BreakerPolicy(failure_threshold=1))
    try:
        vendor_a = s.gw.providers["vendorA"]
        vendor_a.profile = dataclasses.replace(vendor_a.profile, failure_rate=1.0)  # the fallback answers
        s.gw.set_budget(s.tenant.id, Decimal("1"), alert_at=(Decimal("0.00001"),))
        s.gw.store.flush()
        pending = s.gw.store.pending_records
        reply = s.send()
        assert reply.metadata.fallback_used and s.gw.store.pending_records == pending + 1
        transitions = s.gw.sql("SELECT provider, from_state, to_state FROM breaker_transitions")
        assert [tuple(r) for r in transitions.itertuples(index=False)] == [("vendorA", "closed", "open")]
        alerts = s.gw.sql("SELECT threshold, spent_usd FROM budget_alerts")
        assert [(Decimal(str(t)), Decimal(str(v))) for t, v in alerts.itertuples(index=False)] == \
            [(Decimal("0.00001"), reply.metadata.usage.cost_usd)]
    finally:
        s.gw.close()


def test_the_rate_limit_charges_the_agent_s_max_output_tokens_at_admission(setup):
    """The agent's 40 output tokens, not the default 1,024: two sends fit 200 tokens a minute back to back."""
    setup.gw.set_rate_limit(setup.tenant.id, tokens_per_minute=200)
    first = setup.send()  # charged ceil((32 + 5) / 4) + 40 = 50, settled to what it used
    used = first.metadata.usage.tokens_in + first.metadata.usage.tokens_out
    second = math.ceil((len(PROMPT) + 5 + len(first.message.content) + 5) / 4) + MAX_OUT
    assert used + second <= 200 < used + second - MAX_OUT + 1024  # fits only when charged 40, not 1,024
    setup.send()

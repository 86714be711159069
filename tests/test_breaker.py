"""Specification of the circuit breaker per provider, through the real Gateway on a virtual clock.

Faults come from the simulated vendors (their profile is swapped, as the
simulation's incidents do) or, where an exact sequence of outcomes matters,
from a scripted provider.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import duckdb
import pydantic
import pytest

from vbgateway import BreakerPolicy, Gateway, RetryPolicy, VirtualClock
from vbgateway.clock import Clock
from vbgateway.errors import AllProvidersFailedError
from vbgateway.providers import ProviderError, ProviderRequest, ProviderResponse, VendorA, VendorB
from vbgateway.store.tables import TABLES

START = datetime(2026, 1, 1, tzinfo=UTC)
DOWN = {"failure_rate": 1.0, "rate_limit_rate": 0.0}
UP = {"failure_rate": 0.0, "rate_limit_rate": 0.0}
STEADY = {"latency_ms": (100, 100), "spike_rate": 0.0}  # every call takes exactly 100 ms
ONE_TRY = RetryPolicy(attempts=1)
DEFAULT = BreakerPolicy()


class Scripted:
    """A vendor answering from a script: ``"ok"`` or an HTTP status per call, in order."""

    name = "scripted"

    def __init__(self, script: list[str]) -> None:
        self.script, self.calls = list(script), 0

    def bind(self, clock: Clock) -> Scripted:
        return self

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        outcome = self.script[self.calls]
        self.calls += 1
        if outcome != "ok":
            raise ProviderError.from_http(self.name, int(outcome))
        return ProviderResponse("fine", 10, 2)


class Setup:
    """A gateway with breakers on its own virtual clock and DuckDB file; one tenant, one agent, one session."""

    def __init__(self, tmp_path, breaker: BreakerPolicy | None, *, retry: RetryPolicy = ONE_TRY,
                 a: dict | None = None, b: dict | None = None, primary=None, fallback: str | None = "vendorB",
                 seed: int = 7) -> None:
        self.clock = VirtualClock(start=START)
        self.a = primary or VendorA(seed=1, **{**STEADY, **(a or UP)})
        self.b = VendorB(seed=2, **{**STEADY, **(b or UP)})
        name = "vendorA" if primary is None else primary.name
        self.gw = Gateway.open(tmp_path / "gw.duckdb", clock=self.clock, providers={name: self.a, "vendorB": self.b},
                               prices={name: "0.002", "vendorB": "0.003"}, retry=retry, breaker=breaker, seed=seed)
        _, key = self.gw.create_tenant("Breaker Inc")
        self.tenant = self.gw.connect(key)
        agent = self.tenant.create_agent(name="R", primary_provider=name, fallback_provider=fallback,
                                         system_prompt="You are helpful.")
        self.session = self.tenant.create_session(agent.id)

    def send(self, content: str = "Hello there"):
        return self.clock.run(self.tenant.send_message(self.session.id, content))

    def fail(self) -> AllProvidersFailedError:
        with pytest.raises(AllProvidersFailedError) as info:
            self.send()
        return info.value

    def state(self, provider: str = "vendorA") -> str:
        return self.gw.breaker_states()[provider].state

    def transitions(self) -> list[tuple]:
        rows = self.gw.sql("SELECT provider, from_state, to_state, reason FROM breaker_transitions ORDER BY seq")
        return list(rows.itertuples(index=False, name=None))

    def heal(self, vendor, **profile) -> None:
        vendor.profile = dataclasses.replace(vendor.profile, **(profile or UP))


@pytest.fixture
def make(tmp_path):
    made: list[Setup] = []

    def factory(breaker: BreakerPolicy | None = DEFAULT, **kwargs) -> Setup:
        setup = Setup(tmp_path / str(len(made)), breaker, **kwargs)
        made.append(setup)
        return setup

    yield factory
    for setup in made:
        setup.gw.close()


def tries(outcome) -> list[tuple]:
    """(provider, status, error code) of each attempt of a reply or of a failed request."""
    if isinstance(outcome, AllProvidersFailedError):
        return [(a["provider"], a["status"], a["errorCode"]) for a in outcome.details["attempts"]]
    return [(a.provider, a.status, a.error_code) for a in outcome.metadata.attempts]


# --- the policy -----------------------------------------------------------------------------


def test_the_default_policy_is_the_documented_one():
    assert BreakerPolicy().model_dump() == {
        "failure_threshold": 5, "failure_rate": 0.5, "window_s": 30.0, "minimum_calls": 10, "cooldown_s": 30.0,
        "half_open_probes": 1, "when_all_open": "try_anyway", "count_rate_limits": False}


@pytest.mark.parametrize("bad", [{"failure_threshold": 0}, {"failure_rate": 0}, {"failure_rate": 1.5},
                                 {"window_s": 0}, {"cooldown_s": -1}, {"half_open_probes": 0},
                                 {"minimum_calls": 0}, {"when_all_open": "maybe"}, {"colour": "red"},
                                 {"failure_threshold": None, "failure_rate": None}])
def test_a_policy_that_cannot_work_is_refused(bad):
    with pytest.raises(pydantic.ValidationError):
        BreakerPolicy(**bad)


def test_a_policy_is_a_frozen_value():
    policy = BreakerPolicy()
    with pytest.raises(pydantic.ValidationError):
        policy.cooldown_s = 1  # type: ignore[misc]
    assert policy == BreakerPolicy() and hash(policy) == hash(BreakerPolicy())


def test_without_a_breaker_nothing_changes(make):
    s = make(None, retry=RetryPolicy(attempts=3), a=DOWN)
    for _ in range(8):
        assert tries(s.send()) == [("vendorA", "failed", "SERVER_ERROR")] * 3 + [("vendorB", "ok", None)]
    assert s.gw.breaker_states() == {} and s.transitions() == []


# --- closed -> open -------------------------------------------------------------------------


def test_consecutive_failures_open_the_circuit_and_the_fallback_answers_at_once(make):
    s = make(BreakerPolicy(failure_threshold=5), a=DOWN)
    for _ in range(5):
        assert tries(s.send()) == [("vendorA", "failed", "SERVER_ERROR"), ("vendorB", "ok", None)]
    reply = s.send()
    assert tries(reply) == [("vendorA", "skipped", "CIRCUIT_OPEN"), ("vendorB", "ok", None)]
    skip = reply.metadata.attempts[0]
    assert (skip.latency_ms, skip.http_status, skip.retries) == (0, None, 0)
    assert reply.metadata.fallback_used and reply.metadata.provider_used == "vendorB"
    assert s.a.calls == 5 and s.state() == "open"


def test_a_success_resets_the_consecutive_count(make):
    s = make(BreakerPolicy(failure_threshold=3, failure_rate=None),
             primary=Scripted(["500", "500", "ok", "500", "500", "ok", "500", "500", "500"]))
    for _ in range(6):
        s.send()
    assert s.gw.breaker_states()["scripted"].state == "closed"
    for _ in range(3):
        s.send()
    assert s.gw.breaker_states()["scripted"].state == "open"


def test_a_circuit_that_opens_during_a_request_stops_its_retries_without_waiting(make):
    s = make(BreakerPolicy(failure_threshold=2), retry=RetryPolicy(attempts=3), a=DOWN)
    reply = s.send()
    assert tries(reply) == [("vendorA", "failed", "SERVER_ERROR")] * 2 + [("vendorA", "skipped", "CIRCUIT_OPEN"),
                                                                          ("vendorB", "ok", None)]
    events = s.gw.sql("SELECT status, created_at, latency_ms FROM provider_call_events ORDER BY created_at, status")
    second_failure_end = events.created_at[1] + timedelta(milliseconds=int(events.latency_ms[1]))
    for later in (2, 3):  # the skip and the fallback's call: no backoff wait after the circuit opened
        assert abs(events.created_at[later] - second_failure_end) < timedelta(milliseconds=1)
    assert s.a.calls == 2


def test_the_failure_rate_over_the_window_opens_the_circuit_once_there_are_enough_calls(make):
    s = make(BreakerPolicy(failure_threshold=None, failure_rate=0.5, minimum_calls=10),
             primary=Scripted(["ok", "500"] * 10))
    for _ in range(8):
        s.send()
    view = s.gw.breaker_states()["scripted"]
    assert (view.state, view.calls_in_window, view.failures_in_window, view.failure_rate) == ("closed", 8, 4, 0.5)
    s.send()  # 9 calls: still too few to judge
    s.send()  # the 10th call fails: 5 of 10
    assert s.gw.breaker_states()["scripted"].state == "open"
    assert s.transitions() == [("scripted", "closed", "open", "failure_rate")]


def test_calls_older_than_the_window_no_longer_count(make):
    s = make(BreakerPolicy(failure_threshold=None, failure_rate=0.5, minimum_calls=10, window_s=30),
             primary=Scripted(["500"] * 6 + ["ok"] * 4 + ["500"]))
    for _ in range(6):
        s.send()
    s.clock.advance(31)
    for _ in range(5):
        s.send()
    view = s.gw.breaker_states()["scripted"]
    assert (view.state, view.calls_in_window, view.failures_in_window) == ("closed", 5, 1)


@pytest.mark.parametrize("count, state", [(False, "closed"), (True, "open")])
def test_a_429_counts_only_when_the_policy_says_so(make, count, state):
    s = make(BreakerPolicy(failure_threshold=2, count_rate_limits=count), a={"failure_rate": 0, "rate_limit_rate": 1})
    for _ in range(3):
        s.send()
    assert s.state() == state


def test_a_client_error_says_nothing_about_the_provider(make):
    s = make(BreakerPolicy(failure_threshold=2), primary=Scripted(["400"] * 4))
    for _ in range(4):
        s.send()
    view = s.gw.breaker_states()["scripted"]
    assert (view.state, view.calls_in_window, view.consecutive_failures) == ("closed", 0, 0)


# --- open -> half-open -> closed or open ----------------------------------------------------


@pytest.fixture
def opened(make) -> Setup:
    """vendorA down and its circuit just opened (threshold 2, cooldown 30 s)."""
    s = make(BreakerPolicy(failure_threshold=2, cooldown_s=30), a=DOWN)
    s.send()
    s.send()
    assert s.state() == "open"
    return s


def test_an_open_circuit_stays_open_for_the_cooldown(opened):
    view = opened.gw.breaker_states()["vendorA"]
    assert view.cooldown_ends_at == view.since + timedelta(seconds=30)
    opened.clock.advance(29.5)
    assert tries(opened.send())[0] == ("vendorA", "skipped", "CIRCUIT_OPEN")
    assert opened.a.calls == 2


def test_after_the_cooldown_the_circuit_is_half_open(opened):
    since = opened.gw.breaker_states()["vendorA"].since
    opened.clock.advance(30)
    view = opened.gw.breaker_states()["vendorA"]
    assert (view.state, view.since, view.cooldown_ends_at) == ("half_open", since + timedelta(seconds=30), None)


def test_a_successful_probe_closes_the_circuit(opened):
    opened.clock.advance(31)
    opened.heal(opened.a)
    assert tries(opened.send()) == [("vendorA", "ok", None)]
    assert opened.state() == "closed"
    assert opened.transitions() == [("vendorA", "closed", "open", "consecutive_failures"),
                                    ("vendorA", "open", "half_open", "cooldown_elapsed"),
                                    ("vendorA", "half_open", "closed", "probe_succeeded")]


def test_a_failed_probe_opens_the_circuit_for_another_cooldown(opened):
    opened.clock.advance(31)
    reply = opened.send()
    assert tries(reply) == [("vendorA", "failed", "SERVER_ERROR"), ("vendorB", "ok", None)]
    view = opened.gw.breaker_states()["vendorA"]
    fallback_started = opened.gw.sql("SELECT max(created_at) AS t FROM provider_call_events "
                                     "WHERE provider = 'vendorB'").t[0].to_pydatetime()
    assert view.state == "open" and view.since == fallback_started  # reopened as the probe failed
    assert view.cooldown_ends_at == fallback_started + timedelta(seconds=30)
    assert opened.transitions()[-1] == ("vendorA", "half_open", "open", "probe_failed")


def test_a_probe_fails_once_and_is_not_retried(make):
    s = make(BreakerPolicy(failure_threshold=3, cooldown_s=10), retry=RetryPolicy(attempts=3), a=DOWN)
    s.send()
    s.clock.advance(11)
    assert tries(s.send()) == [("vendorA", "failed", "SERVER_ERROR"), ("vendorA", "skipped", "CIRCUIT_OPEN"),
                               ("vendorB", "ok", None)]


def test_half_open_lets_through_only_its_probes_and_closes_once_all_succeed(make):
    s = make(BreakerPolicy(failure_threshold=1, cooldown_s=10, half_open_probes=2), a=DOWN)
    s.send()
    s.clock.advance(11)
    s.heal(s.a)
    sessions = [s.tenant.create_session(s.session.agent_id) for _ in range(3)]

    async def together():
        return await asyncio.gather(*(s.tenant.send_message(x.id, "Hi") for x in sessions))

    replies = s.clock.run(together())
    assert sorted(tries(r)[0] for r in replies) == [("vendorA", "ok", None), ("vendorA", "ok", None),
                                                    ("vendorA", "skipped", "CIRCUIT_OPEN")]
    assert s.state() == "closed"


def test_a_cancelled_probe_frees_its_slot(make):
    s = make(BreakerPolicy(failure_threshold=1, cooldown_s=10), a=DOWN)
    s.send()
    s.clock.advance(11)
    s.heal(s.a)

    async def cancel_during_the_probe():
        probe = asyncio.ensure_future(s.tenant.send_message(s.session.id, "first"))
        await s.clock.sleep(0.05)  # the probe's call takes 100 ms
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
        return await s.tenant.send_message(s.session.id, "second")

    assert tries(s.clock.run(cancel_during_the_probe())) == [("vendorA", "ok", None)]
    assert s.state() == "closed"


# --- every provider open --------------------------------------------------------------------


def both_open(make, when: str) -> Setup:
    s = make(BreakerPolicy(failure_threshold=1, cooldown_s=30, when_all_open=when), a=DOWN, b=DOWN)
    s.fail()
    assert (s.state("vendorA"), s.state("vendorB")) == ("open", "open")
    return s


def test_try_anyway_calls_every_provider_when_all_are_open(make):
    s = both_open(make, "try_anyway")
    error = s.fail()
    assert error.http_status == 502
    assert tries(error) == [("vendorA", "failed", "SERVER_ERROR"), ("vendorB", "failed", "SERVER_ERROR")]
    assert (s.a.calls, s.b.calls) == (2, 2)


def test_try_anyway_applies_to_an_agent_without_fallback(make):
    s = make(BreakerPolicy(failure_threshold=1), a=DOWN, fallback=None)
    s.fail()
    assert tries(s.fail()) == [("vendorA", "failed", "SERVER_ERROR")] and s.a.calls == 2


def test_fail_fast_answers_503_without_calling_any_provider(make):
    s = both_open(make, "fail_fast")
    s.clock.advance(10)
    error = s.fail()
    assert (error.code, error.http_status) == ("ALL_PROVIDERS_FAILED", 503)
    assert tries(error) == [("vendorA", "skipped", "CIRCUIT_OPEN"), ("vendorB", "skipped", "CIRCUIT_OPEN")]
    assert error.details["retryAfterMs"] == pytest.approx(20_000, abs=300)
    assert (s.a.calls, s.b.calls) == (1, 1)
    skipped = s.gw.sql("SELECT count(*) AS n FROM provider_call_events WHERE status = 'skipped'").n[0]
    assert skipped == 2 and s.gw.sql("SELECT count(*) AS n FROM messages").n[0] == 0


@pytest.mark.tenant_clients
def test_fail_fast_reaches_every_client_as_503(tmp_path, tenant_client, runner):
    clock = VirtualClock(start=START)
    providers = {"vendorA": VendorA(seed=1, **DOWN, **STEADY), "vendorB": VendorB(seed=2, **DOWN, **STEADY)}
    with Gateway.open(tmp_path / "gw.duckdb", clock=clock, providers=providers, retry=ONE_TRY, seed=3,
                      breaker=BreakerPolicy(failure_threshold=1, when_all_open="fail_fast")) as gw:
        _, key = gw.create_tenant("Wire Inc")
        client, run = tenant_client(gw, key), runner(clock)
        agent = client.create_agent(name="R", primary_provider="vendorA", fallback_provider="vendorB",
                                    system_prompt="You are helpful.")
        session = client.create_session(agent.id)
        with pytest.raises(AllProvidersFailedError) as first:
            run(client.send_message(session.id, "Hi"))
        with pytest.raises(AllProvidersFailedError) as second:
            run(client.send_message(session.id, "Hi again"))
        # Raised at once by both clients (the HTTP one does not wait out the 503's Retry-After): one refusal.
        skipped = gw.sql("SELECT count(*) AS n FROM provider_call_events WHERE status = 'skipped'").n[0]
    assert skipped == 2 and second.value.retry_after == pytest.approx(30, abs=1)
    assert first.value.retry_after is None
    assert (first.value.http_status, second.value.http_status) == (502, 503)
    assert [a["status"] for a in second.value.details["attempts"]] == ["skipped", "skipped"]


# --- the transitions table ------------------------------------------------------------------


def test_each_transition_is_a_row_with_its_moment_and_counts(opened):
    opened.clock.advance(31)
    opened.heal(opened.a)
    reply = opened.send()
    rows = opened.gw.sql("SELECT * FROM breaker_transitions ORDER BY seq")
    assert list(rows.seq) == [1, 2, 3] and rows.gateway_id.nunique() == 1
    assert rows.gateway_id[0] == opened.gw.breakers.gateway_id
    assert (rows.consecutive_failures[0], rows.window_calls[0], rows.window_failures[0]) == (2, 2, 2)
    opened_at = rows.created_at[0].to_pydatetime()
    assert rows.created_at[1].to_pydatetime() == opened_at + timedelta(seconds=30)  # when the cooldown ended
    assert rows.created_at[2].to_pydatetime() == reply.message.created_at  # the probe's answer


def test_a_seeded_gateway_repeats_its_transitions_exactly(make):
    def run() -> list[tuple]:
        s = make(BreakerPolicy(failure_threshold=2, cooldown_s=5), retry=RetryPolicy(attempts=2),
                 a={"failure_rate": 0.6, "rate_limit_rate": 0.0})
        for _ in range(30):
            s.send()
            s.clock.advance(1)
        return list(s.gw.sql("SELECT * EXCLUDE (created_at), epoch_us(created_at) FROM breaker_transitions "
                             "ORDER BY seq").itertuples(index=False, name=None))

    first, second = run(), run()
    assert len(first) >= 4 and first == second


def test_transitions_of_a_cancelled_request_are_committed_when_the_gateway_closes(tmp_path):
    clock = VirtualClock(start=START)
    slow_b = VendorB(seed=2, **UP, latency_ms=(1000, 1000), spike_rate=0.0)
    path = tmp_path / "gw.duckdb"
    gw = Gateway.open(path, clock=clock, providers={"vendorA": VendorA(seed=1, **DOWN, **STEADY), "vendorB": slow_b},
                      retry=ONE_TRY, breaker=BreakerPolicy(failure_threshold=1), seed=5)
    _, key = gw.create_tenant("Cancel Inc")
    tenant = gw.connect(key)
    agent = tenant.create_agent(name="R", primary_provider="vendorA", fallback_provider="vendorB",
                                system_prompt="You are helpful.")
    session = tenant.create_session(agent.id)

    async def cancelled_in_the_fallback():
        task = asyncio.ensure_future(tenant.send_message(session.id, "Hi"))
        await clock.sleep(0.5)  # vendorA failed (the circuit opened); vendorB is still answering
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    clock.run(cancelled_in_the_fallback())
    assert gw.breaker_states()["vendorA"].state == "open"
    gw.close()
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT from_state, to_state FROM breaker_transitions").fetchall() == [("closed", "open")]


def test_a_database_from_before_breakers_gains_the_table(tmp_path):
    path = tmp_path / "old.duckdb"
    with Gateway.open(path, clock=VirtualClock(start=START)) as gw:
        gw.create_tenant("Old Corp")
    with duckdb.connect(str(path)) as con:  # as migration 1 left it: later tables and columns gone
        for table in TABLES:
            if table.since > 1:
                con.execute(f"DROP TABLE {table.name}")
            else:
                for column in table.columns:
                    if column.since > 1:
                        con.execute(f"ALTER TABLE {table.name} DROP COLUMN {column.name}")
        con.execute("DELETE FROM schema_migrations WHERE version > 1")
    with Gateway.open(path, clock=VirtualClock(start=START)) as gw:
        assert [t.name for t in gw.list_tenants()] == ["Old Corp"]
        assert gw.sql("SELECT count(*) AS n FROM breaker_transitions").n[0] == 0
        assert 4 in set(gw.sql("SELECT version FROM schema_migrations").version)

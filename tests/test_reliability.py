"""Specification of how one reply is obtained: retries, backoff, timeouts, 429s
and fallback, observed through the real Gateway and send_message."""

from __future__ import annotations

import gc
import itertools
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydantic
import pytest

from vbgateway import Gateway, GatewayError, RetryPolicy, VirtualClock
from vbgateway.clock import Clock
from vbgateway.errors import AllProvidersFailedError
from vbgateway.providers import ProviderError, ProviderRequest, ProviderResponse, VendorA, VendorB

pytestmark = pytest.mark.tenant_clients

START = datetime(2026, 1, 1, tzinfo=UTC)
PRICES = {"vendorA": "0.002", "vendorB": "0.003", "picky": "0.001", "broken": "0.001"}

ALWAYS_500 = {"failure_rate": 1.0, "rate_limit_rate": 0.0}
HEALTHY = {"failure_rate": 0.0, "rate_limit_rate": 0.0}
INSTANT = {"latency_ms": (0, 0), "spike_rate": 0.0}


class PickyProvider:
    """A fake vendor that refuses every request as the client's fault (HTTP 400)."""

    name = "picky"

    def __init__(self) -> None:
        self.calls = 0

    def bind(self, clock: Clock) -> PickyProvider:
        return self

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.calls += 1
        raise ProviderError("bad request", error_code="CLIENT_ERROR", http_status=400)


class BrokenProvider:
    """A fake vendor whose adapter has a bug: it raises a plain RuntimeError."""

    name = "broken"

    def __init__(self) -> None:
        self.calls = 0

    def bind(self, clock: Clock) -> BrokenProvider:
        return self

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.calls += 1
        raise RuntimeError("adapter bug")


class Setup:
    """A gateway on its own virtual clock and DuckDB file, one tenant (embedded or over HTTP), one session."""

    def __init__(self, tmp_path: Path, providers: dict, connect, runner, *, retry: RetryPolicy | None = None,
                 primary: str = "vendorA", fallback: str | None = "vendorB", seed: int = 7) -> None:
        self.clock = VirtualClock(start=START)
        self.providers = providers
        self.gw = Gateway.open(tmp_path / "x.duckdb", clock=self.clock, providers=providers, retry=retry,
                               prices={k: v for k, v in PRICES.items() if k in providers}, seed=seed)
        _tenant, key = self.gw.create_tenant("Reliability Inc")
        self.tenant = connect(self.gw, key)
        self.run = runner(self.clock)
        self.agent = self.tenant.create_agent(name="R", primary_provider=primary, fallback_provider=fallback,
                                              system_prompt="You are helpful.")
        self.session = self.tenant.create_session(self.agent.id, customer_id="c1")

    def send(self, content: str = "Hello there", **kwargs):
        return self.run(self.tenant.send_message(self.session.id, content, **kwargs))

    def fail(self, content: str = "Hello there") -> AllProvidersFailedError:
        with pytest.raises(AllProvidersFailedError) as info:
            self.send(content)
        return info.value

    def count(self, table: str) -> int:
        return int(self.gw.sql(f"SELECT count(*) AS n FROM {table}")["n"][0])

    def call_events(self):
        return self.gw.sql("SELECT provider, status, http_status, latency_ms, retries, error_code, created_at "
                           "FROM provider_call_events ORDER BY created_at, provider, retries")

    def start_gaps(self) -> list[timedelta]:
        starts = list(self.gw.sql("SELECT created_at FROM provider_call_events ORDER BY created_at")["created_at"])
        return [(b - a).to_pytimedelta() for a, b in itertools.pairwise(starts)]


@pytest.fixture
def make(tmp_path, tenant_client, runner):
    made: list[Setup] = []

    def factory(providers: dict, **kwargs) -> Setup:
        setup = Setup(tmp_path / str(len(made)), providers, tenant_client, runner, **kwargs)
        made.append(setup)
        return setup

    yield factory
    for setup in made:
        setup.gw.close()


def attempts_of(reply) -> list[tuple]:
    return [(a.provider, a.status, a.http_status, a.retries, a.error_code) for a in reply.metadata.attempts]


# --- the happy path -------------------------------------------------------------------------


def test_a_success_on_the_first_try_records_one_attempt_with_zero_retries(make) -> None:
    s = make({"vendorA": VendorA(seed=1, **HEALTHY), "vendorB": VendorB(seed=2, **HEALTHY)})
    reply = s.send()
    assert attempts_of(reply) == [("vendorA", "ok", 200, 0, None)]
    meta = reply.metadata
    assert (meta.provider_used, meta.primary_attempted, meta.fallback_attempted, meta.fallback_used) == (
        "vendorA", "vendorA", None, False)


def test_the_shared_gateway_fixture_answers_with_at_least_one_ok_attempt(acme, agent, run) -> None:
    session = acme.create_session(agent.id)
    reply = run(acme.send_message(session.id, "Hello"))
    assert reply.metadata.attempts[-1].status == "ok"
    assert reply.metadata.attempts[-1].provider == reply.metadata.provider_used
    assert reply.metadata.attempts[0].provider == "vendorA"


# --- retries then fallback ------------------------------------------------------------------


@pytest.fixture
def primary_down(make) -> Setup:
    return make({"vendorA": VendorA(seed=1, **ALWAYS_500), "vendorB": VendorB(seed=2, **HEALTHY)})


def test_an_always_failing_primary_is_tried_three_times_then_the_fallback_answers(primary_down) -> None:
    reply = primary_down.send()
    assert attempts_of(reply) == [
        ("vendorA", "failed", 500, 0, "SERVER_ERROR"),
        ("vendorA", "failed", 500, 1, "SERVER_ERROR"),
        ("vendorA", "failed", 500, 2, "SERVER_ERROR"),
        ("vendorB", "ok", 200, 0, None),
    ]


def test_a_fallback_reply_names_the_fallback_as_used_and_both_as_attempted(primary_down) -> None:
    meta = primary_down.send().metadata
    assert meta.fallback_used is True
    assert meta.provider_used == "vendorB"
    assert meta.primary_attempted == "vendorA"
    assert meta.fallback_attempted == "vendorB"


def test_a_fallback_reply_is_billed_at_the_fallback_price(primary_down) -> None:
    usage = primary_down.send().metadata.usage
    assert str(usage.pricing.usd_per_1k_tokens) == "0.003"


def test_every_attempt_of_a_fallback_reply_is_in_provider_call_events(primary_down) -> None:
    reply = primary_down.send()
    events = primary_down.call_events()
    assert list(zip(events["provider"], events["status"], events["retries"])) == [
        (a.provider, a.status, a.retries) for a in reply.metadata.attempts]
    assert primary_down.count("usage_events") == 1


def test_the_wire_shape_of_attempts_is_camel_case(primary_down) -> None:
    wire = primary_down.send().model_dump(by_alias=True, mode="json")
    first = wire["metadata"]["attempts"][0]
    assert set(first) == {"provider", "status", "httpStatus", "latencyMs", "retries", "errorCode"}
    assert (first["httpStatus"], first["errorCode"]) == (500, "SERVER_ERROR")
    assert wire["metadata"]["fallbackUsed"] is True


def test_without_a_fallback_an_always_failing_primary_is_all_providers_failed_502(make) -> None:
    s = make({"vendorA": VendorA(seed=1, **ALWAYS_500), "vendorB": VendorB(seed=2, **HEALTHY)}, fallback=None)
    error = s.fail()
    assert isinstance(error, GatewayError)
    assert (error.code, error.http_status) == ("ALL_PROVIDERS_FAILED", 502)
    assert [(a["provider"], a["retries"], a["errorCode"]) for a in error.details["attempts"]] == [
        ("vendorA", 0, "SERVER_ERROR"), ("vendorA", 1, "SERVER_ERROR"), ("vendorA", 2, "SERVER_ERROR")]
    assert s.providers["vendorB"].calls == 0


def test_a_failed_request_records_its_three_attempts_and_writes_no_message_or_usage(make) -> None:
    s = make({"vendorA": VendorA(seed=1, **ALWAYS_500), "vendorB": VendorB(seed=2, **HEALTHY)}, fallback=None)
    error = s.fail()
    events = s.call_events()
    assert list(events["retries"]) == [0, 1, 2]
    assert set(events["status"]) == {"failed"} and set(events["error_code"]) == {"SERVER_ERROR"}
    assert set(s.gw.sql("SELECT request_id FROM provider_call_events")["request_id"]) == {error.details["requestId"]}
    assert s.count("messages") == 0
    assert s.count("usage_events") == 0
    assert s.count("idempotency_records") == 0


def test_when_both_providers_fail_six_attempts_are_made_and_nothing_is_billed(make) -> None:
    s = make({"vendorA": VendorA(seed=1, **ALWAYS_500), "vendorB": VendorB(seed=2, failure_rate=1.0)})
    error = s.fail()
    assert error.http_status == 502
    assert [(a["provider"], a["retries"]) for a in error.details["attempts"]] == [
        ("vendorA", 0), ("vendorA", 1), ("vendorA", 2), ("vendorB", 0), ("vendorB", 1), ("vendorB", 2)]
    assert all(a["status"] == "failed" for a in error.details["attempts"])
    assert s.count("provider_call_events") == 6
    assert s.count("messages") == 0
    assert s.count("usage_events") == 0


def test_a_failed_request_leaves_the_transcript_without_messages_but_with_its_calls(make) -> None:
    s = make({"vendorA": VendorA(seed=1, **ALWAYS_500), "vendorB": VendorB(seed=2, failure_rate=1.0)})
    s.fail()
    transcript = s.tenant.transcript(s.session.id)
    assert transcript.messages == []
    assert len(transcript.events) == 6


# --- backoff and 429 ------------------------------------------------------------------------


def test_a_429_retry_after_is_honoured_between_attempt_starts(make) -> None:
    s = make({"vendorA": VendorA(seed=1, **HEALTHY),
              "vendorB": VendorB(seed=2, rate_limit_rate=1.0, retry_after_ms=(1500, 1500))},
             primary="vendorB", fallback="vendorA")
    reply = s.send()
    assert [a.error_code for a in reply.metadata.attempts[:3]] == ["RATE_LIMITED"] * 3
    assert all(a.http_status == 429 for a in reply.metadata.attempts[:3])
    gaps = s.start_gaps()
    latencies = [a.latency_ms for a in reply.metadata.attempts]
    # vendorB tries: the wait after each 429 is at least its retryAfterMs (1.5 s), well above any backoff
    for gap, latency in zip(gaps[:2], latencies[:2]):
        assert gap - timedelta(milliseconds=latency) >= timedelta(milliseconds=1500) - timedelta(milliseconds=1)


def test_a_retry_after_larger_than_the_backoff_cap_still_wins_over_backoff(make) -> None:
    policy = RetryPolicy(backoff_base_s=0.1, backoff_cap_s=0.2, jitter=0.0)
    s = make({"vendorA": VendorA(seed=1, **HEALTHY),
              "vendorB": VendorB(seed=2, rate_limit_rate=1.0, retry_after_ms=(2500, 2500), **INSTANT)},
             primary="vendorB", fallback="vendorA", retry=policy)
    s.send()
    assert s.start_gaps()[:2] == [timedelta(milliseconds=2500)] * 2


def test_retry_after_is_capped_by_the_policy(make) -> None:
    policy = RetryPolicy(retry_after_cap_s=1.0, jitter=0.0)
    s = make({"vendorA": VendorA(seed=1, **HEALTHY),
              "vendorB": VendorB(seed=2, rate_limit_rate=1.0, retry_after_ms=(2500, 2500), **INSTANT)},
             primary="vendorB", fallback="vendorA", retry=policy)
    s.send()
    assert s.start_gaps()[:2] == [timedelta(seconds=1)] * 2


def test_backoff_without_429_never_exceeds_the_cap(make) -> None:
    policy = RetryPolicy(attempts=6, backoff_base_s=0.2, backoff_cap_s=0.5)
    s = make({"vendorA": VendorA(seed=1, **ALWAYS_500, **INSTANT), "vendorB": VendorB(seed=2, **HEALTHY)},
             retry=policy)
    s.send()
    gaps = s.start_gaps()[:5]  # the five waits between vendorA's six tries
    assert all(timedelta(0) < gap <= timedelta(seconds=0.5) for gap in gaps)


def test_backoff_grows_exponentially_from_200_ms_between_attempt_starts(make) -> None:
    policy = RetryPolicy(jitter=0.0)
    s = make({"vendorA": VendorA(seed=1, **ALWAYS_500, **INSTANT), "vendorB": VendorB(seed=2, **HEALTHY, **INSTANT)},
             retry=policy)
    reply = s.send()
    assert all(a.latency_ms == 0 for a in reply.metadata.attempts)
    assert s.start_gaps() == [timedelta(milliseconds=200), timedelta(milliseconds=400), timedelta(0)]


def test_backoff_gaps_exclude_the_latency_of_the_failed_attempt(make) -> None:
    policy = RetryPolicy(jitter=0.0)
    s = make({"vendorA": VendorA(seed=1, failure_rate=1.0, latency_ms=(100, 100), spike_rate=0.0),
              "vendorB": VendorB(seed=2, **HEALTHY)}, retry=policy)
    s.send()
    assert s.start_gaps()[:2] == [timedelta(milliseconds=300), timedelta(milliseconds=500)]


def test_default_backoff_waits_200_400_and_800_ms_each_within_ten_percent(make) -> None:
    s = make({"vendorA": VendorA(seed=1, **ALWAYS_500, **INSTANT), "vendorB": VendorB(seed=2, **HEALTHY)},
             retry=RetryPolicy(attempts=4))
    s.send()
    for gap, nominal_ms in zip(s.start_gaps()[:3], [200, 400, 800], strict=True):
        assert timedelta(milliseconds=nominal_ms * 0.9) <= gap <= timedelta(milliseconds=nominal_ms * 1.1)


def test_default_jitter_spreads_backoff_on_both_sides_of_the_nominal_delay() -> None:
    policy, rng = RetryPolicy(), random.Random(3)
    for failed, nominal in [(1, 0.2), (2, 0.4), (3, 0.8)]:
        waits = [policy.backoff_s(failed, rng) for _ in range(2000)]
        assert nominal * 0.9 <= min(waits) < nominal * 0.92
        assert nominal * 1.08 < max(waits) <= nominal * 1.1


def test_jitter_never_lifts_a_backoff_above_the_cap() -> None:
    policy, rng = RetryPolicy(backoff_base_s=0.2, backoff_cap_s=0.5, jitter=0.5), random.Random(3)
    waits = [policy.backoff_s(failed, rng) for failed in (3, 4, 5) for _ in range(500)]
    assert max(waits) == 0.5 and min(waits) >= 0.25


# --- timeouts -------------------------------------------------------------------------------


@pytest.fixture
def primary_too_slow(make) -> Setup:
    return make({"vendorA": VendorA(seed=1, **HEALTHY, latency_ms=(5000, 5000), spike_rate=0.0),
                 "vendorB": VendorB(seed=2, **HEALTHY)}, retry=RetryPolicy(timeout_s=2.0))


@pytest.mark.embedded_only  # attempt deadlines jump with virtual time only on its own loop
def test_a_vendor_slower_than_the_attempt_timeout_is_recorded_as_timeout_after_about_two_seconds(
        primary_too_slow) -> None:
    first = primary_too_slow.send().metadata.attempts[0]
    assert (first.provider, first.status, first.error_code) == ("vendorA", "failed", "TIMEOUT")
    assert first.http_status is None
    assert first.latency_ms == pytest.approx(2000, abs=5)


@pytest.mark.embedded_only  # attempt deadlines jump with virtual time only on its own loop
def test_timeouts_are_retried_then_the_fallback_answers(primary_too_slow) -> None:
    reply = primary_too_slow.send()
    assert [(a.provider, a.retries, a.error_code) for a in reply.metadata.attempts] == [
        ("vendorA", 0, "TIMEOUT"), ("vendorA", 1, "TIMEOUT"), ("vendorA", 2, "TIMEOUT"), ("vendorB", 0, None)]
    assert reply.metadata.provider_used == "vendorB"
    assert primary_too_slow.providers["vendorA"].calls == 3


@pytest.mark.embedded_only  # attempt deadlines jump with virtual time only on its own loop
def test_timed_out_attempts_are_logged_with_their_timeout_latency(primary_too_slow) -> None:
    primary_too_slow.send()
    events = primary_too_slow.call_events()
    timeouts = events[events["error_code"] == "TIMEOUT"]
    assert len(timeouts) == 3
    assert all(abs(latency - 2000) <= 5 for latency in timeouts["latency_ms"])


# --- errors that are not retried ------------------------------------------------------------


def test_a_client_error_is_not_retried_and_goes_straight_to_the_fallback(make) -> None:
    s = make({"picky": PickyProvider(), "vendorB": VendorB(seed=2, **HEALTHY)}, primary="picky")
    reply = s.send()
    assert attempts_of(reply) == [("picky", "failed", 400, 0, "CLIENT_ERROR"), ("vendorB", "ok", 200, 0, None)]
    assert s.providers["picky"].calls == 1
    assert reply.metadata.fallback_used is True


def test_a_provider_raising_a_plain_exception_is_recorded_as_provider_exception_and_falls_back(make) -> None:
    s = make({"broken": BrokenProvider(), "vendorB": VendorB(seed=2, **HEALTHY)}, primary="broken")
    reply = s.send()
    first = reply.metadata.attempts[0]
    assert (first.provider, first.status, first.error_code, first.http_status) == (
        "broken", "failed", "PROVIDER_EXCEPTION", None)
    assert s.providers["broken"].calls == 1
    assert reply.metadata.provider_used == "vendorB"


def test_a_provider_raising_a_plain_exception_without_fallback_is_a_clean_502(make) -> None:
    s = make({"broken": BrokenProvider(), "vendorB": VendorB(seed=2, **HEALTHY)}, primary="broken", fallback=None)
    error = s.fail()
    assert error.http_status == 502
    assert [a["errorCode"] for a in error.details["attempts"]] == ["PROVIDER_EXCEPTION"]
    # the gateway is still usable afterwards
    s.tenant.update_agent(s.agent.id, primary_provider="vendorB")
    assert s.send("again").metadata.provider_used == "vendorB"


# --- policy ---------------------------------------------------------------------------------


def test_a_policy_without_fallback_never_calls_the_fallback(make) -> None:
    s = make({"vendorA": VendorA(seed=1, **ALWAYS_500), "vendorB": VendorB(seed=2, **HEALTHY)},
             retry=RetryPolicy(fallback=False))
    error = s.fail()
    assert {a["provider"] for a in error.details["attempts"]} == {"vendorA"}
    assert len(error.details["attempts"]) == 3
    assert s.providers["vendorB"].calls == 0


@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_the_policy_sets_the_number_of_attempts_per_provider(make, attempts: int) -> None:
    s = make({"vendorA": VendorA(seed=1, **ALWAYS_500, **INSTANT), "vendorB": VendorB(seed=2, failure_rate=1.0,
                                                                                       **INSTANT)},
             retry=RetryPolicy(attempts=attempts))
    error = s.fail()
    assert [(a["provider"], a["retries"]) for a in error.details["attempts"]] == (
        [("vendorA", i) for i in range(attempts)] + [("vendorB", i) for i in range(attempts)])


def test_default_policy_follows_the_contract() -> None:
    policy = RetryPolicy()
    assert (policy.attempts, policy.timeout_s, policy.backoff_base_s, policy.fallback, policy.honour_retry_after) == (
        3, 2.0, 0.2, True, True)
    assert policy.jitter == 0.1


@pytest.mark.parametrize("fields", [
    {"attempts": 0},
    {"attempts": -1},
    {"backoff_base_s": 1.0, "backoff_cap_s": 0.5},
    {"timeout_s": 0},
    {"jitter": 1.5},
    {"unknown_field": 1},
], ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_invalid_retry_policies_raise_pydantic_validation_error(fields: dict) -> None:
    with pytest.raises(pydantic.ValidationError):
        RetryPolicy(**fields)


# --- virtual time ---------------------------------------------------------------------------


def test_a_message_through_slow_failing_vendors_completes_in_well_under_a_second_of_wall_time(make) -> None:
    s = make({"vendorA": VendorA(seed=1, failure_rate=1.0, latency_ms=(5000, 5000), spike_rate=0.0),
              "vendorB": VendorB(seed=2, **HEALTHY, latency_ms=(5000, 5000), spike_rate=0.0)},
             retry=RetryPolicy(timeout_s=10.0))
    wall_start = time.perf_counter()
    reply = s.send()
    wall = time.perf_counter() - wall_start
    assert reply.metadata.provider_used == "vendorB"
    assert s.clock.monotonic() >= 20.0  # 3 x 5 s failures, backoffs, 5 s success
    assert wall < 1.0


def test_attempt_latencies_are_measured_on_the_gateway_clock(make) -> None:
    s = make({"vendorA": VendorA(seed=1, **HEALTHY, latency_ms=(1234, 1234), spike_rate=0.0),
              "vendorB": VendorB(seed=2, **HEALTHY)})
    reply = s.send()
    assert reply.metadata.attempts[0].latency_ms == 1234
    assert reply.message.created_at == START + timedelta(milliseconds=1234)


# --- memory ---------------------------------------------------------------------------------


def test_failed_attempts_leave_no_reference_cycles_for_the_collector(tmp_path: Path) -> None:
    """A failed attempt's error is raised through frames that must not keep it: in a reference cycle,
    every retried attempt (and its frames) would wait for the cycle collector, whose pauses a
    gateway with a failing vendor would then pay for."""
    clock = VirtualClock(start=START)
    providers = {"vendorA": VendorA(seed=1, **ALWAYS_500, **INSTANT), "vendorB": VendorB(seed=2, **HEALTHY, **INSTANT)}
    with Gateway.open(tmp_path / "gc.duckdb", clock=clock, providers=providers, seed=7) as gw:
        _tenant, key = gw.create_tenant("Cycles Inc")
        tenant = gw.connect(key)
        agent = tenant.create_agent(name="R", primary_provider="vendorA", fallback_provider="vendorB",
                                    system_prompt="You are helpful.")
        session = tenant.create_session(agent.id)

        async def send(count: int) -> None:
            for n in range(count):
                reply = await tenant.send_message(session.id, f"question {n}")
                assert [a.status for a in reply.metadata.attempts] == ["failed"] * 3 + ["ok"]

        clock.run(send(1))  # caches and first-use state
        gc.collect()
        gc.disable()
        try:
            clock.run(send(20))
            unreachable = gc.collect()
        finally:
            gc.enable()
    assert unreachable < 20, f"{unreachable} objects in cycles after 20 replies of 3 failed attempts each"

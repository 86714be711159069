"""Specification of the two simulated vendors: their raw shapes, their adapters,
token estimates, failure and rate-limit behaviour, latencies and determinism."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from vbgateway.clock import VirtualClock
from vbgateway.providers import (
    ChatTurn,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    VendorA,
    VendorB,
    VendorProfile,
    default_providers,
    estimate_tokens,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
VENDORS = {"vendorA": VendorA, "vendorB": VendorB}
SAMPLE_CALLS = 5000

REQUEST = ProviderRequest(
    system_prompt="You are a helpful support agent.",
    messages=(ChatTurn("user", "Hi there"), ChatTurn("assistant", "Hello! How can I help?"),
              ChatTurn("user", "Where is my order?")),
    enabled_tools=(),
    request_id="req_test",
)


def healthy(vendor_cls: type, seed: int = 1, **fields: object):
    """A vendor that always answers, bound to a fresh virtual clock."""
    fields = {"failure_rate": 0.0, "rate_limit_rate": 0.0, **fields}
    return vendor_cls(seed=seed, **fields).bind(VirtualClock(start=START))


def serve(vendor, request: ProviderRequest = REQUEST):
    return vendor.clock.run(vendor._serve(request))


def complete(vendor, request: ProviderRequest = REQUEST) -> ProviderResponse:
    return vendor.clock.run(vendor.complete(request))


def failure_of(vendor, request: ProviderRequest = REQUEST) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        complete(vendor, request)
    return info.value


# --- raw shapes and adapters ----------------------------------------------------------------


def test_vendor_a_raw_success_body_has_exactly_output_text_tokens_in_tokens_out_latency_ms() -> None:
    status, body = serve(healthy(VendorA))
    assert status == 200
    assert set(body) == {"outputText", "tokensIn", "tokensOut", "latencyMs"}
    assert isinstance(body["outputText"], str) and body["outputText"]
    assert all(isinstance(body[k], int) for k in ("tokensIn", "tokensOut", "latencyMs"))


def test_vendor_a_adapter_normalises_its_raw_body() -> None:
    _, body = serve(healthy(VendorA, seed=7))
    response = complete(healthy(VendorA, seed=7))  # same seed: the same draw
    assert isinstance(response, ProviderResponse)
    assert (response.text, response.tokens_in, response.tokens_out) == (
        body["outputText"], body["tokensIn"], body["tokensOut"])
    assert response.raw == body


def test_vendor_b_raw_success_body_is_openai_like_choices_and_usage() -> None:
    status, body = serve(healthy(VendorB))
    assert status == 200
    content = body["choices"][0]["message"]["content"]
    assert isinstance(content, str) and content
    assert set(body["usage"]) == {"input_tokens", "output_tokens"}
    assert "outputText" not in body


def test_vendor_b_adapter_normalises_its_raw_body() -> None:
    _, body = serve(healthy(VendorB, seed=7))
    response = complete(healthy(VendorB, seed=7))
    assert (response.text, response.tokens_in, response.tokens_out) == (
        body["choices"][0]["message"]["content"], body["usage"]["input_tokens"], body["usage"]["output_tokens"])
    assert response.raw == body


@pytest.mark.parametrize("name", sorted(VENDORS))
def test_both_vendors_satisfy_the_provider_protocol(name: str) -> None:
    vendor = VENDORS[name](seed=1)
    assert isinstance(vendor, Provider)
    assert vendor.name == name


def test_default_providers_are_vendor_a_and_vendor_b() -> None:
    providers = default_providers(seed=3)
    assert sorted(providers) == ["vendorA", "vendorB"]
    assert isinstance(providers["vendorA"], VendorA) and isinstance(providers["vendorB"], VendorB)


# --- tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("chars", "tokens"), [(0, 0), (1, 1), (3, 1), (4, 1), (5, 2), (8, 2), (9, 3), (4001, 1001)])
def test_estimate_tokens_is_ceil_of_characters_over_four(chars: int, tokens: int) -> None:
    assert estimate_tokens(chars) == tokens


@pytest.mark.parametrize("name", sorted(VENDORS))
@pytest.mark.parametrize(
    ("system_prompt", "history"),
    [
        ("S", ("u",)),
        ("abcd", ("efgh",)),
        ("You are helpful.", ("Hello", "Hi! How can I help?", "My invoice, please")),
        ("x" * 999, ("y" * 1, "z" * 2, "w" * 3, "v" * 4, "q" * 5)),
        ("Ünïcödé 🎉", ("مرحبا", "שלום\n")),
    ],
)
def test_tokens_in_are_ceil_of_system_prompt_plus_all_history_chars_over_four_and_tokens_out_of_the_reply(
        name: str, system_prompt: str, history: tuple[str, ...]) -> None:
    turns = tuple(ChatTurn("user" if i % 2 == 0 else "assistant", text) for i, text in enumerate(history))
    request = ProviderRequest(system_prompt, turns)
    response = complete(healthy(VENDORS[name]), request)
    expected_in = math.ceil((len(system_prompt) + sum(len(text) for text in history)) / 4)
    assert response.tokens_in == expected_in
    assert response.tokens_out == math.ceil(len(response.text) / 4)


# --- failures -------------------------------------------------------------------------------


def test_vendor_a_with_failure_rate_one_raises_a_retryable_http_500_server_error() -> None:
    error = failure_of(VendorA(failure_rate=1.0, seed=1).bind(VirtualClock(start=START)))
    assert error.http_status == 500
    assert error.error_code == "SERVER_ERROR"
    assert error.retryable is True
    assert error.retry_after_ms is None


def test_vendor_b_with_rate_limit_rate_one_raises_429_rate_limited_with_retry_after_between_500_and_2500_ms() -> None:
    vendor = VendorB(rate_limit_rate=1.0, seed=1).bind(VirtualClock(start=START))
    errors = [failure_of(vendor) for _ in range(200)]
    assert {(e.http_status, e.error_code, e.retryable) for e in errors} == {(429, "RATE_LIMITED", True)}
    delays = [e.retry_after_ms for e in errors]
    assert all(isinstance(d, int) and 500 <= d <= 2500 for d in delays)
    assert len(set(delays)) > 1, "retryAfterMs should vary"


def test_vendor_b_raw_429_body_carries_retry_after_ms() -> None:
    status, body = serve(VendorB(rate_limit_rate=1.0, seed=1).bind(VirtualClock(start=START)))
    assert status == 429
    assert 500 <= body["retryAfterMs"] <= 2500


def test_vendor_a_raw_500_body_is_not_a_success_shape() -> None:
    status, body = serve(VendorA(failure_rate=1.0, seed=1).bind(VirtualClock(start=START)))
    assert status == 500
    assert "outputText" not in body


@pytest.mark.parametrize(("status", "code", "retryable"), [
    (500, "SERVER_ERROR", True), (502, "SERVER_ERROR", True), (503, "SERVER_ERROR", True),
    (429, "RATE_LIMITED", True), (400, "CLIENT_ERROR", False), (401, "CLIENT_ERROR", False),
    (404, "CLIENT_ERROR", False),
])
def test_http_statuses_translate_to_error_codes_and_only_5xx_and_429_are_retryable(
        status: int, code: str, retryable: bool) -> None:
    error = ProviderError.from_http("vendorX", status)
    assert (error.http_status, error.error_code, error.retryable) == (status, code, retryable)


def test_a_timeout_is_retryable_without_an_http_status() -> None:
    assert ProviderError("slow", error_code="TIMEOUT").retryable is True


# --- default profiles over many seeded calls ------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    result: str  # "ok" or the error code
    latency_ms: float
    text: str


def sample(name: str, seed: int, calls: int = SAMPLE_CALLS, **profile: object) -> list[Outcome]:
    """``calls`` calls to a vendor with its default profile, latency measured on the virtual clock."""
    clock = VirtualClock(start=START)
    vendor = VENDORS[name](seed=seed, **profile).bind(clock)
    request = ProviderRequest("You are helpful.", (ChatTurn("user", "Hello"),))

    async def main() -> list[Outcome]:
        outcomes = []
        for _ in range(calls):
            t0 = clock.monotonic()
            try:
                response = await vendor.complete(request)
                result, text = "ok", response.text
            except ProviderError as exc:
                result, text = exc.error_code, ""
            outcomes.append(Outcome(result, (clock.monotonic() - t0) * 1000, text))
        return outcomes

    return clock.run(main())


@pytest.fixture(scope="module")
def default_samples() -> dict[str, list[Outcome]]:
    return {"vendorA": sample("vendorA", seed=101), "vendorB": sample("vendorB", seed=202)}


def test_vendor_a_fails_with_http_500_on_about_ten_percent_of_calls(default_samples) -> None:
    counts = Counter(o.result for o in default_samples["vendorA"])
    assert set(counts) <= {"ok", "SERVER_ERROR"}
    assert 0.08 <= counts["SERVER_ERROR"] / SAMPLE_CALLS <= 0.12


def test_vendor_b_rate_limits_about_five_percent_of_calls_and_never_fails_otherwise(default_samples) -> None:
    counts = Counter(o.result for o in default_samples["vendorB"])
    assert set(counts) <= {"ok", "RATE_LIMITED"}
    assert 0.04 <= counts["RATE_LIMITED"] / SAMPLE_CALLS <= 0.06


@pytest.mark.parametrize(("name", "low", "high", "spike_factor", "spike_share"), [
    ("vendorA", 50, 300, 3, 0.05),
    ("vendorB", 100, 300, 4, 0.03),
])
def test_latencies_stay_in_the_documented_range_with_occasional_spikes(
        default_samples, name: str, low: float, high: float, spike_factor: float, spike_share: float) -> None:
    latencies = [o.latency_ms for o in default_samples[name]]
    assert min(latencies) >= low - 1e-6
    assert max(latencies) <= high * spike_factor + 1e-6
    above_normal = sum(latency > high + 1e-6 for latency in latencies) / len(latencies)
    assert 0 < above_normal <= spike_share + 0.015  # spikes exist, and are rare
    normal = [latency for latency in latencies if latency <= high + 1e-6]
    assert min(normal) < low + 10 and max(normal) > high - 10  # the whole uniform range is used


def test_vendor_a_raw_latency_ms_is_the_time_the_call_took() -> None:
    vendor = healthy(VendorA, seed=11)
    t0 = vendor.clock.monotonic()
    _, body = serve(vendor)
    assert body["latencyMs"] == round((vendor.clock.monotonic() - t0) * 1000)


@pytest.mark.parametrize("name", sorted(VENDORS))
def test_the_same_seed_gives_the_identical_sequence_of_outcomes(name: str) -> None:
    assert sample(name, seed=5, calls=300) == sample(name, seed=5, calls=300)


@pytest.mark.parametrize("name", sorted(VENDORS))
def test_different_seeds_give_different_sequences(name: str) -> None:
    assert sample(name, seed=5, calls=300) != sample(name, seed=6, calls=300)


@pytest.mark.parametrize("name", sorted(VENDORS))
def test_each_call_is_counted(name: str) -> None:
    vendor = healthy(VENDORS[name])
    for _ in range(3):
        complete(vendor)
    assert vendor.calls == 3


@pytest.mark.parametrize("name", sorted(VENDORS))
def test_zero_latency_profile_takes_no_virtual_time(name: str) -> None:
    vendor = healthy(VENDORS[name], latency_ms=(0, 0), spike_rate=0.0)
    complete(vendor)
    assert vendor.clock.monotonic() == 0.0


# --- profile validation ---------------------------------------------------------------------


@pytest.mark.parametrize("fields", [
    {"failure_rate": 1.5},
    {"failure_rate": -0.1},
    {"rate_limit_rate": 2.0},
    {"spike_rate": -1.0},
    {"latency_ms": (300.0, 50.0)},
    {"latency_ms": (-1.0, 10.0)},
    {"retry_after_ms": (2500, 500)},
    {"spike_factor": 0.5},
], ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_invalid_profiles_raise_value_error(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        VendorProfile(**fields)


@pytest.mark.parametrize("name", sorted(VENDORS))
@pytest.mark.parametrize("fields", [{"failure_rate": 1.5}, {"latency_ms": (300.0, 50.0)}])
def test_vendors_refuse_invalid_profile_fields(name: str, fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        VENDORS[name](seed=1, **fields)


@pytest.mark.parametrize("name", sorted(VENDORS))
def test_profile_fields_override_only_what_is_given(name: str) -> None:
    vendor = VENDORS[name](seed=1, failure_rate=0.25)
    assert vendor.profile.failure_rate == 0.25
    assert vendor.profile.latency_ms == VENDORS[name].default_profile.latency_ms

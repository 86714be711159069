"""Specification of OpenAICompatible, driven through the gateway against a real HTTP upstream on loopback.

The upstream (``vbgateway.testing.upstream``) answers like an OpenAI-style
service and fails on demand. Real providers run on the system clock (their
I/O takes real time), so these gateways do, with short timeouts and backoffs.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from upstream_support import IN, OUT
from upstream_support import UPSTREAM_KEY as KEY

from vbgateway import Gateway, RetryPolicy, SystemClock
from vbgateway.errors import GatewayError
from vbgateway.providers import (
    ChatTurn,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    TextDelta,
    VendorB,
    estimate_tokens,
)
from vbgateway.providers.openai import OpenAICompatible
from vbgateway.testing.upstream import Fault, Upstream

ENV = {"UPSTREAM_KEY": KEY}
FAST = RetryPolicy(timeout_s=0.5, backoff_base_s=0.01, backoff_cap_s=0.02, jitter=0.0)
REQUEST = ProviderRequest("You are a test.", (ChatTurn("user", "where is my order"),))



@pytest.fixture
def up(upstream: Upstream) -> Upstream:
    upstream.reset()
    return upstream


def provider(up: Upstream, url: str | None = None, **fields: object) -> OpenAICompatible:
    made = OpenAICompatible("real", url or up.url, "upstream-model", "UPSTREAM_KEY", (IN, OUT), environ=ENV,
                            **fields)  # type: ignore[arg-type]
    return made.bind(SystemClock())


def run(coro):
    return asyncio.run(coro)


async def closing(made: OpenAICompatible, coro):
    try:
        return await coro
    finally:
        await made.aclose()


def complete(made: OpenAICompatible, request: ProviderRequest = REQUEST) -> ProviderResponse:
    return run(closing(made, made.complete(request)))


def failure(made: OpenAICompatible) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        complete(made)
    return info.value


class Setup:
    """A gateway on the system clock whose agent asks the upstream first and vendorB second."""

    def __init__(self, path: Path, up: Upstream, *, retry: RetryPolicy = FAST, url: str | None = None,
                 environ: dict[str, str] | None = None) -> None:
        real = OpenAICompatible("real", url or up.url, "upstream-model", "UPSTREAM_KEY", (IN, OUT),
                                environ=ENV if environ is None else environ)
        self.vendor_b = VendorB(seed=2, latency_ms=(0, 0), rate_limit_rate=0.0)
        self.gw = Gateway.open(path, clock=SystemClock(), retry=retry, seed=7,
                               providers={"real": real, "vendorB": self.vendor_b})
        _, key = self.gw.create_tenant("Acme")
        self.tenant = self.gw.connect(key)
        agent = self.tenant.create_agent(name="Real", primary_provider="real", fallback_provider="vendorB",
                                         system_prompt="You are a test.")
        self.session = self.tenant.create_session(agent.id)
        self.real = real

    def send(self, content: str = "where is my order", **kw: object):
        return run(closing(self.real, self.tenant.send_message(self.session.id, content, **kw)))

    def usage_rows(self):
        return self.gw.sql("SELECT provider, tokens_in, tokens_out, cost_usd, usd_per_1k_tokens, usd_per_1m_input, "
                           "usd_per_1m_output FROM usage_events")


@pytest.fixture
def setup(tmp_path: Path, up: Upstream) -> Iterator[Setup]:
    made = Setup(tmp_path / "gw.duckdb", up)
    yield made
    made.gw.close()


# --- the adapter and transport alone ---------------------------------------------------------


def test_a_reply_carries_the_upstream_text_and_its_real_usage(up):
    response = complete(provider(up))
    answer = up.answered[-1]
    assert response.text == answer.text == "Upstream reply: where is my order"
    assert (response.tokens_in, response.tokens_out) == (answer.usage["prompt_tokens"],
                                                        answer.usage["completion_tokens"])
    assert response.tokens_in != estimate_tokens(REQUEST.input_chars())  # not the characters / 4 estimate


def test_the_request_is_a_chat_completion_with_the_system_prompt_first_and_the_key_as_bearer(up):
    complete(provider(up))
    received = up.received[-1]
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == f"Bearer {KEY}"
    assert received.body == {"model": "upstream-model", "messages": [
        {"role": "system", "content": "You are a test."}, {"role": "user", "content": "where is my order"}]}


@pytest.mark.parametrize(("fault", "code", "status", "retryable"), [
    (Fault.status(500), "SERVER_ERROR", 500, True),
    (Fault.status(503), "SERVER_ERROR", 503, True),
    (Fault.rate_limited("2"), "RATE_LIMITED", 429, True),
    (Fault.status(400), "CLIENT_ERROR", 400, False),
    (Fault.status(401), "CLIENT_ERROR", 401, False),
    (Fault.drop(), "SERVER_ERROR", None, True),
    (Fault.malformed(), "BAD_RESPONSE", 200, False),
    (Fault.malformed(b'{"choices": []}'), "BAD_RESPONSE", 200, False),
], ids=["500", "503", "429", "400", "401", "dropped", "not-json", "no-choices"])
def test_errors_map_to_the_codes_the_retry_loop_reads(up, fault, code, status, retryable):
    up.fail_next(fault)
    error = failure(provider(up))
    assert (error.error_code, error.http_status, error.retryable) == (code, status, retryable)


def test_retry_after_in_seconds_becomes_retry_after_ms(up):
    up.fail_next(Fault.rate_limited("2"))
    assert failure(provider(up)).retry_after_ms == 2000


def test_a_retry_after_date_is_read_against_the_clock(up):
    up.fail_next(Fault.status(503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"))  # long past: retry at once
    error = failure(provider(up))
    assert (error.error_code, error.retry_after_ms) == ("SERVER_ERROR", 0)


def test_a_refused_connection_is_a_retryable_server_error_without_status(up):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = failure(provider(up, url=f"http://127.0.0.1:{port}/v1"))
    assert (error.error_code, error.http_status, error.retryable) == ("SERVER_ERROR", None, True)


def test_an_unset_key_variable_fails_at_once_without_a_request(up):
    made = OpenAICompatible("real", up.url, "upstream-model", "NOT_SET_ANYWHERE", environ={}).bind(SystemClock())
    error = failure(made)
    assert (error.error_code, error.retryable) == ("CLIENT_ERROR", False)
    assert "NOT_SET_ANYWHERE" in str(error) and up.received == []


def test_the_key_never_shows_in_repr(up):
    made = provider(up)
    assert KEY not in repr(made) and KEY not in repr(made.transport)


def test_a_stream_yields_deltas_then_the_whole_reply_with_usage(up):
    made = provider(up)

    async def collect():
        return [item async for item in made.stream(REQUEST)]

    items = run(closing(made, collect()))
    deltas, final = items[:-1], items[-1]
    assert all(isinstance(d, TextDelta) for d in deltas) and len(deltas) > 1
    assert isinstance(final, ProviderResponse) and "".join(d.text for d in deltas) == final.text
    assert final.tokens_in == up.answered[-1].usage["prompt_tokens"]
    assert up.received[-1].body["stream_options"] == {"include_usage": True}


def test_a_stream_cut_off_mid_way_is_a_server_error_after_the_first_deltas(up):
    up.fail_next(Fault.drop(after_chunks=3))
    made = provider(up)
    seen: list[object] = []

    async def collect():
        async for item in made.stream(REQUEST):
            seen.append(item)

    with pytest.raises(ProviderError) as info:
        run(closing(made, collect()))
    assert info.value.error_code == "SERVER_ERROR" and seen and all(isinstance(s, TextDelta) for s in seen)


def test_a_stream_without_usage_is_billed_by_the_estimate(up):
    up.fail_next(Fault.no_usage())
    made = provider(up)

    async def last():
        return [item async for item in made.stream(REQUEST)][-1]

    final = run(closing(made, last()))
    assert (final.tokens_in, final.tokens_out) == (estimate_tokens(REQUEST.input_chars()),
                                                   estimate_tokens(len(final.text)))


# --- through the gateway: retries, timeouts, fallback, billing --------------------------------


def test_a_reply_is_billed_by_the_upstream_usage_at_the_input_and_output_rates(setup, up):
    reply = setup.send()
    usage, answer = reply.metadata.usage, up.answered[-1].usage
    assert (usage.tokens_in, usage.tokens_out) == (answer["prompt_tokens"], answer["completion_tokens"])
    assert usage.cost_usd == (usage.tokens_in * IN + usage.tokens_out * OUT) / 1_000_000
    assert (usage.pricing.usd_per_1m_input, usage.pricing.usd_per_1m_output) == (IN, OUT)
    assert usage.pricing.usd_per_1k_tokens == OUT / 1000  # the single rate: the higher one
    row = setup.usage_rows().iloc[0]
    assert (row.provider, Decimal(str(row.usd_per_1m_input)), Decimal(str(row.usd_per_1m_output))) == ("real", IN, OUT)
    assert Decimal(str(row.cost_usd)) == usage.cost_usd


def test_a_server_error_is_retried_on_the_same_upstream(setup, up):
    up.fail_next(Fault.status(500), Fault.status(502))
    reply = setup.send()
    attempts = [(a.provider, a.status, a.http_status, a.error_code) for a in reply.metadata.attempts]
    assert attempts == [("real", "failed", 500, "SERVER_ERROR"), ("real", "failed", 502, "SERVER_ERROR"),
                        ("real", "ok", 200, None)]
    assert reply.metadata.provider_used == "real"


def test_a_dropped_connection_is_retried(setup, up):
    up.fail_next(Fault.drop())
    reply = setup.send()
    assert [a.error_code for a in reply.metadata.attempts] == ["SERVER_ERROR", None]


def test_an_upstream_that_hangs_times_out_on_the_gateway_clock_and_is_retried(setup, up):
    up.fail_next(Fault.hang(up_to_s=30))
    reply = setup.send()
    first, second = reply.metadata.attempts
    assert (first.error_code, first.http_status) == ("TIMEOUT", None)
    assert 450 <= first.latency_ms < 2000  # the policy's 0.5 s, not the upstream's 30 s
    assert second.status == "ok"


def test_a_slow_answer_within_the_timeout_is_not_retried(setup, up):
    up.fail_next(Fault.slow(0.2))
    reply = setup.send()
    assert len(reply.metadata.attempts) == 1 and reply.metadata.attempts[0].latency_ms >= 190


def test_retry_after_is_honoured_before_the_next_attempt(tmp_path, up):
    made = Setup(tmp_path / "gw.duckdb", up, retry=FAST.model_copy(update={"timeout_s": 5.0}))
    try:
        up.fail_next(Fault.rate_limited("1"))
        made.send()
        started = made.gw.sql("SELECT created_at FROM provider_call_events ORDER BY created_at").created_at
        gap = (started.iloc[1] - started.iloc[0]).total_seconds()
        assert 1.0 <= gap < 3.0  # not the policy's 10 ms backoff
    finally:
        made.gw.close()


def test_an_upstream_failing_every_attempt_falls_back_to_vendor_b_billed_at_its_rate(setup, up):
    up.fail_next(*[Fault.status(500)] * 3)
    reply = setup.send()
    assert reply.metadata.provider_used == "vendorB" and reply.metadata.fallback_used
    assert [a.provider for a in reply.metadata.attempts] == ["real"] * 3 + ["vendorB"]
    usage = reply.metadata.usage
    assert usage.pricing.usd_per_1k_tokens == Decimal("0.003") and usage.pricing.usd_per_1m_input is None
    assert setup.usage_rows().provider.tolist() == ["vendorB"]


def test_a_malformed_answer_is_not_retried_and_falls_back(setup, up):
    up.fail_next(Fault.malformed())
    reply = setup.send()
    assert [(a.provider, a.error_code) for a in reply.metadata.attempts] == [("real", "BAD_RESPONSE"),
                                                                            ("vendorB", None)]


def test_an_answer_without_usage_is_billed_by_the_estimate_not_for_nothing(setup, up):
    up.fail_next(Fault.no_usage())
    reply = setup.send()
    usage = reply.metadata.usage
    assert usage.tokens_out == estimate_tokens(len(reply.message.content)) and usage.cost_usd > 0


def test_one_reply_is_billed_once_and_a_repeated_key_replays_it_without_calling_the_upstream(setup, up):
    first = setup.send(idempotency_key="k1")
    again = setup.send(idempotency_key="k1")
    assert again.metadata.idempotency.replayed and again.message.id == first.message.id
    assert len(up.received) == 1 and len(setup.usage_rows()) == 1


def test_the_api_key_is_stored_nowhere_in_the_database(setup, up, tmp_path):
    setup.send()
    setup.gw.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert KEY.encode() not in blob


def test_a_missing_key_falls_back_at_once(tmp_path, up):
    made = Setup(tmp_path / "gw.duckdb", up, environ={})
    try:
        reply = made.send()
        assert [(a.provider, a.error_code) for a in reply.metadata.attempts] == [("real", "CLIENT_ERROR"),
                                                                                ("vendorB", None)]
        assert up.received == []
    finally:
        made.gw.close()


def test_every_provider_failing_is_all_providers_failed_with_nothing_billed(setup, up):
    setup.vendor_b.profile = setup.vendor_b.profile.__class__(failure_rate=1.0, latency_ms=(0, 0))
    up.fail_next(*[Fault.status(500)] * 3)
    with pytest.raises(GatewayError) as info:
        setup.send()
    assert info.value.code == "ALL_PROVIDERS_FAILED" and setup.usage_rows().empty

"""GET /metrics for governance and the OpenTelemetry spans: refusals, breaker states and transitions, traces.

A real gateway on a DuckDB file and a virtual clock, scraped over real HTTP
from a loopback server; the counts are checked against the rows the gateway
stored (``request_refusals``, ``breaker_transitions``). Spans are collected
with opentelemetry-sdk's in-memory exporter.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from live_server import LiveServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client.parser import text_string_to_metric_families

from vbgateway import BreakerPolicy, Gateway, RetryPolicy, VirtualClock
from vbgateway.api import create_app
from vbgateway.errors import AllProvidersFailedError, BudgetExceededError, RateLimitExceededError
from vbgateway.providers import VendorA, VendorB
from vbgateway.tracing import disable_tracing, enable_tracing

START = datetime(2026, 1, 1, tzinfo=UTC)
DOWN = {"failure_rate": 1.0, "rate_limit_rate": 0.0}
UP = {"failure_rate": 0.0, "rate_limit_rate": 0.0}
REQUIRED = {  # the issue's list: family name (as the parser reports it) -> type
    "vbgateway_http_requests": "counter", "vbgateway_http_request_duration_seconds": "histogram",
    "vbgateway_provider_calls": "counter", "vbgateway_provider_call_duration_seconds": "histogram",
    "vbgateway_provider_time_to_first_token_seconds": "histogram",
    "vbgateway_replies": "counter", "vbgateway_tokens": "counter", "vbgateway_cost_usd": "counter",
    "vbgateway_breaker_state": "gauge", "vbgateway_breaker_transitions": "counter",
    "vbgateway_budget_refusals": "counter", "vbgateway_rate_limit_refusals": "counter",
}


class Setup:
    """A gateway on a virtual clock and a DuckDB file, served on loopback; one tenant, agent and session."""

    def __init__(self, tmp_path: Path, breaker: BreakerPolicy | None = None, a: dict | None = None) -> None:
        self.clock = VirtualClock(start=START, commit_window_s=0.0)
        self.a = VendorA(seed=1, latency_ms=(100, 100), spike_rate=0.0, **(a or UP))
        self.b = VendorB(seed=2, latency_ms=(100, 100), spike_rate=0.0, **UP)
        self.gw = Gateway.open(tmp_path / "gw.duckdb", clock=self.clock, providers={"vendorA": self.a,
                                                                                   "vendorB": self.b},
                               retry=RetryPolicy(attempts=1), breaker=breaker, seed=11)
        self.tenant, self.client, self.session = self.new_tenant("Acme")
        self.live = LiveServer(create_app(self.gw)).__enter__()
        self.http = httpx.Client(base_url=self.live.url, timeout=20)

    def new_tenant(self, name: str, fallback: str | None = "vendorB"):
        tenant, key = self.gw.create_tenant(name)
        client = self.gw.connect(key)
        agent = client.create_agent(name="Support", primary_provider="vendorA", fallback_provider=fallback,
                                    system_prompt="You are helpful.", max_output_tokens=60)
        return tenant, client, client.create_session(agent.id).id

    def send(self, client=None, session: str | None = None, content: str = "Hello"):
        return self.clock.run((client or self.client).send_message(session or self.session, content))

    def scrape(self) -> dict[str, tuple[str, list]]:
        response = self.http.get("/metrics")
        assert response.status_code == 200
        return {f.name: (f.type, f.samples) for f in text_string_to_metric_families(response.text)}

    def close(self) -> None:
        self.http.close()
        self.live.__exit__(None, None, None)
        self.gw.close()


def samples(families: dict, family: str) -> dict[tuple, float]:
    """{(label values in name order...): value} of a family's samples (its _total / plain samples only)."""
    _, found = families[family]
    return {tuple(sorted(s.labels.items())): s.value for s in found if not s.name.endswith("_created")}


@pytest.fixture
def make(tmp_path) -> Iterator:
    made: list[Setup] = []

    def factory(**kwargs) -> Setup:
        setup = Setup(tmp_path / str(len(made)), **kwargs)
        made.append(setup)
        return setup

    yield factory
    for setup in made:
        setup.close()


# --- the families ------------------------------------------------------------------------------


def test_every_family_the_issue_lists_is_served_with_its_type(make):
    s = make(breaker=BreakerPolicy())
    s.send()
    s.scrape()  # an HTTP request is counted once answered: the next scrape shows this one
    families = s.scrape()
    assert {name: families[name][0] for name in REQUIRED if name in families} == REQUIRED
    names = {sample.name for _, found in families.values() for sample in found}
    assert {"vbgateway_replies_total", "vbgateway_tokens_total", "vbgateway_cost_usd_total",
            "vbgateway_provider_calls_total", "vbgateway_http_requests_total",
            "vbgateway_provider_call_duration_seconds_bucket"} <= names


# --- refusals ------------------------------------------------------------------------------------


def test_budget_and_rate_limit_refusals_are_counted_per_tenant_as_stored(make):
    s = make()
    poor, poor_client, poor_session = s.new_tenant("Poor")
    busy, busy_client, busy_session = s.new_tenant("Busy")
    s.gw.set_budget(poor.id, Decimal("0.0000001"))
    s.gw.set_rate_limit(busy.id, requests_per_minute=2)
    for _ in range(3):
        with pytest.raises(BudgetExceededError):
            s.send(poor_client, poor_session)
    for i in range(5):
        if i < 2:
            s.send(busy_client, busy_session)
        else:
            with pytest.raises(RateLimitExceededError):
                s.send(busy_client, busy_session)
    s.send()  # Acme: answered, refused by nothing
    families = s.scrape()
    assert samples(families, "vbgateway_budget_refusals") == {(("tenant", poor.id),): 3}
    assert samples(families, "vbgateway_rate_limit_refusals") == {(("tenant", busy.id),): 3}
    stored = s.gw.sql("SELECT code, tenant_id, count(*) AS n FROM request_refusals GROUP BY ALL")
    assert sorted(stored.itertuples(index=False, name=None)) == sorted(
        [("BUDGET_EXCEEDED", poor.id, 3), ("RATE_LIMIT_EXCEEDED", busy.id, 3)])


# --- breakers -------------------------------------------------------------------------------------


def states(s: Setup) -> dict[str, float]:
    return {dict(labels)["provider"]: v for labels, v in samples(s.scrape(), "vbgateway_breaker_state").items()}


def transitions(s: Setup) -> dict[tuple[str, str], float]:
    found = samples(s.scrape(), "vbgateway_breaker_transitions")
    return {(dict(labels)["provider"], dict(labels)["to"]): v for labels, v in found.items()}


def test_breaker_states_follow_an_outage_and_its_recovery(make):
    s = make(breaker=BreakerPolicy(failure_threshold=2, cooldown_s=30), a=DOWN)
    assert states(s) == {"vendorA": 0, "vendorB": 0} and transitions(s) == {}
    s.send()
    s.send()
    assert states(s) == {"vendorA": 2, "vendorB": 0}  # open
    assert transitions(s) == {("vendorA", "open"): 1}
    s.clock.advance(31)
    assert states(s) == {"vendorA": 1, "vendorB": 0}  # half open once the cooldown is over, before any call
    s.send()  # the probe fails: open again
    assert states(s) == {"vendorA": 2, "vendorB": 0}
    s.clock.advance(31)
    s.a.profile = dataclasses.replace(s.a.profile, **UP)
    s.send()  # the probe succeeds
    assert states(s) == {"vendorA": 0, "vendorB": 0}
    counted = transitions(s)
    assert counted == {("vendorA", "open"): 2, ("vendorA", "half_open"): 2, ("vendorA", "closed"): 1}
    stored = s.gw.sql("SELECT provider, to_state, count(*) AS n FROM breaker_transitions GROUP BY ALL")
    assert {(p, to): n for p, to, n in stored.itertuples(index=False, name=None)} == counted


def test_without_a_breaker_policy_there_is_no_breaker_series(make):
    s = make(a=DOWN)
    s.send()
    families = s.scrape()
    assert families["vbgateway_breaker_state"] == ("gauge", [])
    assert families["vbgateway_breaker_transitions"] == ("counter", [])


# --- OpenTelemetry spans --------------------------------------------------------------------------


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def tracer_provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def ns(at: datetime) -> int:
    return round((at - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1e6) * 1000


def test_a_reply_is_a_genai_chat_span_with_a_child_per_attempt(make, exporter):
    s = make(a=DOWN)
    assert enable_tracing(s.gw, tracer_provider(exporter))
    reply = s.send()
    spans = exporter.get_finished_spans()
    chat = next(span for span in spans if span.name.startswith("chat "))
    meta, usage = reply.metadata, reply.metadata.usage
    assert chat.name == f"chat {meta.agent_id}"
    assert dict(chat.attributes) == {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": meta.agent_id,
        "gen_ai.provider.name": "vendorB", "gen_ai.system": "vendorB", "gen_ai.response.model": "vendorB",
        "gen_ai.response.id": reply.message.id, "gen_ai.conversation.id": s.session,
        "gen_ai.request.max_tokens": 60,
        "gen_ai.usage.input_tokens": usage.tokens_in, "gen_ai.usage.output_tokens": usage.tokens_out,
        "vbgateway.tenant_id": s.tenant.id, "vbgateway.request_id": meta.request_id,
        "vbgateway.cost_usd": float(usage.cost_usd), "vbgateway.channel": meta.channel,
        "vbgateway.fallback_used": True}
    assert chat.end_time == ns(reply.message.created_at)
    attempts = [span for span in spans if span.name.startswith("attempt ")]
    assert [(a.name, a.attributes.get("error.type"), a.status.status_code) for a in attempts] == [
        ("attempt vendorA", "SERVER_ERROR", StatusCode.ERROR), ("attempt vendorB", None, StatusCode.UNSET)]
    assert all(a.parent.span_id == chat.context.span_id and a.context.trace_id == chat.context.trace_id
               for a in attempts)
    for span, logged in zip(attempts, meta.attempts, strict=True):  # the attempt log's times, on the clock
        assert span.end_time - span.start_time == logged.latency_ms * 1_000_000
        assert span.attributes["vbgateway.attempt.latency_ms"] == logged.latency_ms
    assert attempts[0].start_time >= chat.start_time and attempts[1].end_time <= chat.end_time
    assert len(spans) == 3


def test_a_request_no_provider_answered_is_an_error_span(make, exporter):
    s = make(a=DOWN)
    _, client, session = s.new_tenant("Lonely", fallback=None)
    enable_tracing(s.gw, tracer_provider(exporter))
    with pytest.raises(AllProvidersFailedError):
        s.send(client, session)
    chat = next(span for span in exporter.get_finished_spans() if span.name.startswith("chat "))
    assert chat.status.status_code is StatusCode.ERROR
    assert chat.attributes["error.type"] == "ALL_PROVIDERS_FAILED"
    assert chat.attributes["gen_ai.provider.name"] == "vendorA" and "gen_ai.usage.input_tokens" not in chat.attributes


def test_no_span_is_written_once_tracing_is_off(make, exporter):
    s = make()
    enable_tracing(s.gw, tracer_provider(exporter))
    s.send()
    assert len(exporter.get_finished_spans()) == 2
    disable_tracing(s.gw)
    s.send()
    assert len(exporter.get_finished_spans()) == 2 and s.gw.metrics.tracer is None


class _BrokenTracer:
    def start_span(self, *args, **kwargs):
        raise RuntimeError("the collector is gone")


class _BrokenProvider:
    def get_tracer(self, *args, **kwargs) -> _BrokenTracer:
        return _BrokenTracer()


def test_a_tracer_that_fails_never_fails_a_reply(make, caplog):
    s = make()
    enable_tracing(s.gw, _BrokenProvider())
    with caplog.at_level(logging.DEBUG, logger="vbgateway.tracing"):
        replies = [s.send(content=f"Hello {i}") for i in range(3)]
    assert all(r.message.content for r in replies)
    assert s.gw.sql("SELECT count(*) FROM usage_events").iloc[0, 0] == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "trace spans" in warnings[0].getMessage()  # once, not per reply


ENV_SCRIPT = textwrap.dedent("""
    import asyncio
    import sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from vbgateway import Gateway

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    with Gateway.open(sys.argv[1]) as gw:
        _, key = gw.create_tenant("Env")
        client = gw.connect(key)
        agent = client.create_agent(name="E", primary_provider="vendorB", system_prompt="x")
        session = client.create_session(agent.id)
        asyncio.run(client.send_message(session.id, "Hello"))
    print(sorted({span.name.split()[0] for span in exporter.get_finished_spans()}))
""")


@pytest.mark.parametrize(("value", "expected"), [("1", "['attempt', 'chat']"), ("", "[]")], ids=["on", "off"])
def test_the_environment_switches_tracing_on_through_the_global_provider(tmp_path, value, expected):
    env = {**os.environ, "VBGATEWAY_OTEL": value, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", ENV_SCRIPT, str(tmp_path / "env.duckdb")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == expected

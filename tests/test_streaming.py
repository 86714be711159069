"""Streaming replies, billed exactly once whatever the reader does.

Every promise runs against the loopback OpenAI-compatible upstream (a real
HTTP server with faults on demand), through the gateway's one send path:
text arrives as the upstream writes it; retries and fallback happen only
before the first text; a failure after it ends the stream and bills nothing;
a reader that leaves (a loop broken early, an HTTP client that hangs up after
a few bytes) leaves the reply to be finished, stored and billed once, and
the same idempotency key then replays it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest
from live_server import LiveServer, free_port, wait_until_serving
from upstream_support import IN, LONG, OUT, upstream_provider
from upstream_support import UPSTREAM_KEY as KEY

import vbgateway
from vbgateway import Gateway, RetryPolicy, SystemClock
from vbgateway.api import create_app
from vbgateway.client import HttpRetryPolicy
from vbgateway.client.transport import Transport, json_request
from vbgateway.errors import BudgetExceededError, IdempotencyConflictError, StreamInterruptedError
from vbgateway.models import Reply
from vbgateway.providers import VendorB, estimate_tokens
from vbgateway.streaming import CHARS_PER_TOKEN_BOUND, TextDelta
from vbgateway.testing.upstream import Fault, Upstream

FAST = RetryPolicy(timeout_s=0.5, backoff_base_s=0.01, backoff_cap_s=0.02, jitter=0.0)



class Setup:
    """A gateway on the system clock whose agent streams from the upstream first and asks vendorB second."""

    def __init__(self, path: Path, up: Upstream, *, retry: RetryPolicy = FAST, max_output_tokens: int = 1024) -> None:
        self.up = up
        self.real = upstream_provider(up)
        self.vendor_b = VendorB(seed=2, latency_ms=(0, 0), rate_limit_rate=0.0)
        self.gw = Gateway.open(path, clock=SystemClock(), retry=retry, seed=7,
                               providers={"real": self.real, "vendorB": self.vendor_b})
        _, self.key = self.gw.create_tenant("Acme")
        self.tenant = self.gw.connect(self.key)
        self.agent = self.tenant.create_agent(name="Streamer", primary_provider="real", fallback_provider="vendorB",
                                              system_prompt="You are a test.", max_output_tokens=max_output_tokens)
        self.session = self.tenant.create_session(self.agent.id)

    async def collect(self, content: str, **kw: object) -> list[TextDelta | Reply]:
        return [item async for item in self.tenant.stream_message(self.session.id, content, **kw)]  # type: ignore[arg-type]

    def run(self, coro):
        async def closing():
            try:
                return await coro
            finally:
                await self.real.aclose()
        return asyncio.run(closing())

    def billed(self) -> list[tuple[str, int, int, Decimal, str]]:
        frame = self.gw.sql("SELECT provider, tokens_in, tokens_out, cost_usd, request_id FROM usage_events "
                            "ORDER BY created_at")
        return [tuple(row) for row in frame.itertuples(index=False)]  # type: ignore[misc]

    def messages(self) -> int:
        return int(self.gw.sql("SELECT count(*) FROM messages").iloc[0, 0])


@pytest.fixture
def setup(tmp_path: Path, upstream: Upstream) -> Iterator[Setup]:
    upstream.reset()
    made = Setup(tmp_path / "gw.duckdb", upstream)
    yield made
    made.gw.close()


def texts(items: list[TextDelta | Reply]) -> str:
    return "".join(item.text for item in items if isinstance(item, TextDelta))


# --- the stream itself -----------------------------------------------------------------------


def test_text_arrives_piece_by_piece_and_the_reply_is_billed_with_the_upstream_usage(setup: Setup):
    items = setup.run(setup.collect("where is my order"))
    reply = items[-1]
    assert isinstance(reply, Reply) and all(isinstance(item, TextDelta) for item in items[:-1])
    assert len(items) > 3  # the upstream writes word by word
    assert texts(items) == reply.message.content == "Upstream reply: where is my order"
    answer = setup.up.answered[-1]
    assert answer.stream and setup.up.received[-1].body["stream"] is True
    usage = reply.metadata.usage
    assert (usage.tokens_in, usage.tokens_out) == (answer.usage["prompt_tokens"], answer.usage["completion_tokens"])
    assert setup.billed() == [("real", usage.tokens_in, usage.tokens_out, usage.cost_usd, reply.metadata.request_id)]
    assert usage.cost_usd == (usage.tokens_in * IN + usage.tokens_out * OUT) / 1_000_000
    assert setup.messages() == 2


def test_the_stream_and_the_plain_send_store_the_same_shape(setup: Setup):
    async def both() -> tuple[list[TextDelta | Reply], Reply]:
        streamed = await setup.collect("first")
        sent = await setup.tenant.send_message(setup.session.id, "second")
        return streamed, sent
    streamed, sent = setup.run(both())
    reply = streamed[-1]
    assert isinstance(reply, Reply)
    assert reply.metadata.model_dump(exclude={"request_id", "attempts", "usage"}) == sent.metadata.model_dump(
        exclude={"request_id", "attempts", "usage"})
    transcript = setup.tenant.transcript(setup.session.id)
    assert [m.content for m in transcript.messages] == ["first", "Upstream reply: first", "second",
                                                       "Upstream reply: second"]


def test_the_time_to_first_token_is_measured_for_streamed_replies(setup: Setup):
    setup.up.fail_next(Fault.slow(0.05))
    setup.run(setup.collect("hello"))
    series = setup.gw.metrics.first_token_seconds.series[("real",)]
    assert series[-1] >= 0.05 and sum(series[:-1]) == 1  # one observation, at least the upstream's delay
    assert b"vbgateway_provider_time_to_first_token_seconds_count" in setup.gw.metrics.render()


def test_a_stream_without_usage_is_billed_by_the_estimate_never_for_nothing(setup: Setup):
    setup.up.fail_next(Fault.no_usage())
    reply = setup.run(setup.collect("no usage here"))[-1]
    assert isinstance(reply, Reply)
    assert reply.metadata.usage.tokens_out == estimate_tokens(len("Upstream reply: no usage here"))
    assert reply.metadata.usage.cost_usd > 0


# --- retries and fallback only before the first text -------------------------------------------


def test_failures_before_the_first_text_are_retried_then_fall_back(setup: Setup):
    setup.up.fail_next(Fault.status(500), Fault.rate_limited("0"))
    items = setup.run(setup.collect("retry me"))
    reply = items[-1]
    assert isinstance(reply, Reply) and reply.metadata.provider_used == "real"
    assert [(a.status, a.error_code) for a in reply.metadata.attempts] == [
        ("failed", "SERVER_ERROR"), ("failed", "RATE_LIMITED"), ("ok", None)]
    assert texts(items) == reply.message.content  # nothing of the failed attempts reached the reader

    setup.up.fail_next(Fault.status(503), Fault.status(503), Fault.status(503))
    items = setup.run(setup.collect("fall back"))
    reply = items[-1]
    assert isinstance(reply, Reply) and reply.metadata.provider_used == "vendorB" and reply.metadata.fallback_used
    assert texts(items) == reply.message.content  # a provider that cannot stream gives its text in one piece


def test_a_stream_that_stalls_before_its_first_text_is_a_timeout_and_is_retried(setup: Setup):
    setup.up.fail_next(Fault.trickle(1.0))  # the role event at once, then nothing for a second
    reply = setup.run(setup.collect("stalled"))[-1]
    assert isinstance(reply, Reply)
    assert [(a.status, a.error_code) for a in reply.metadata.attempts] == [("failed", "TIMEOUT"), ("ok", None)]


def test_a_failure_after_the_first_text_ends_the_stream_bills_nothing_and_asks_no_one_else(setup: Setup):
    calls_b = setup.vendor_b.calls
    setup.up.fail_next(Fault.drop(after_chunks=3))
    received: list[TextDelta] = []

    async def read() -> None:
        async for item in setup.tenant.stream_message(setup.session.id, "cut me off"):
            assert isinstance(item, TextDelta)
            received.append(item)
    with pytest.raises(StreamInterruptedError) as info:
        setup.run(read())
    assert "".join(d.text for d in received) == "Upstream reply: "  # what came before the cut
    assert info.value.http_status == 502
    assert [a["errorCode"] for a in info.value.details["attempts"]] == ["SERVER_ERROR"]  # no retry, no fallback
    assert setup.vendor_b.calls == calls_b
    assert setup.billed() == [] and setup.messages() == 0
    logged = setup.gw.sql("SELECT status, error_code FROM provider_call_events")
    assert logged.values.tolist() == [["failed", "SERVER_ERROR"]]
    reply = setup.run(setup.collect("again"))[-1]  # the session goes on
    assert isinstance(reply, Reply) and len(setup.billed()) == 1


def test_reading_stops_at_the_output_bound_of_a_vendor_that_ignores_max_tokens(tmp_path: Path, upstream: Upstream):
    upstream.reset()
    setup = Setup(tmp_path / "bound.duckdb", upstream, max_output_tokens=2)
    try:
        reply = setup.run(setup.collect(LONG))[-1]
        assert isinstance(reply, Reply)
        assert len(reply.message.content) == 2 * CHARS_PER_TOKEN_BOUND
        assert reply.metadata.usage.tokens_out == 2
        assert setup.up.received[-1].body["max_tokens"] == 2
    finally:
        setup.gw.close()


# --- idempotency and readers that leave --------------------------------------------------------


def test_the_same_key_replays_a_streamed_reply_in_one_piece_and_a_different_request_conflicts(setup: Setup):
    first = setup.run(setup.collect("keyed", idempotency_key="k-1"))
    again = setup.run(setup.collect("keyed", idempotency_key="k-1"))
    assert isinstance(first[-1], Reply) and isinstance(again[-1], Reply)
    assert [texts(again)] == [item.text for item in again[:-1]] == [first[-1].message.content]
    assert again[-1].metadata.idempotency.replayed and again[-1].message.id == first[-1].message.id
    with pytest.raises(IdempotencyConflictError):
        setup.run(setup.collect("something else", idempotency_key="k-1"))
    assert len(setup.billed()) == 1


def test_a_reader_that_leaves_early_leaves_a_reply_that_is_stored_and_billed_once(setup: Setup):
    setup.up.fail_next(Fault.trickle(0.02))

    async def leave_after_two() -> Reply:
        seen = 0
        stream = setup.tenant.stream_message(setup.session.id, LONG, idempotency_key="leaver")
        async for _ in stream:
            seen += 1
            if seen == 2:
                break
        await setup.gw.sender.finish_detached()  # what a closing server does
        replayed = [item async for item in setup.tenant.stream_message(setup.session.id, LONG,
                                                                          idempotency_key="leaver")]
        assert isinstance(replayed[-1], Reply)
        return replayed[-1]
    reply = setup.run(leave_after_two())
    assert reply.metadata.idempotency.replayed
    assert reply.message.content == f"Upstream reply: {LONG}"  # read to its end without a reader
    answer = setup.up.answered[-1]
    assert setup.billed() == [("real", answer.usage["prompt_tokens"], answer.usage["completion_tokens"],
                               reply.metadata.usage.cost_usd, reply.metadata.request_id)]


def test_a_budget_refusal_comes_before_any_text(setup: Setup):
    setup.gw.set_budget(setup.tenant.id, monthly_usd=Decimal("0.000001"))
    with pytest.raises(BudgetExceededError):
        setup.run(setup.collect("too dear"))
    assert setup.up.received == [] and setup.billed() == []


# --- over HTTP: Server-Sent Events, and a client that hangs up ---------------------------------


@pytest.fixture
def served(setup: Setup) -> Iterator[tuple[Setup, str]]:
    with LiveServer(create_app(setup.gw)) as server:
        yield setup, server.url


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    events = []
    for block in raw.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], orjson.loads(fields["data"])))
    return events


def post_stream(url: str, setup: Setup, content: str, key: str | None = None) -> httpx.Response:
    headers = {"X-API-Key": setup.key, "Accept": "text/event-stream"}
    if key:
        headers["Idempotency-Key"] = key
    return httpx.post(f"{url}/v1/sessions/{setup.session.id}/messages", json={"role": "user", "content": content},
                      headers=headers, timeout=10)


def test_accept_event_stream_answers_delta_events_then_done_with_the_reply(served):
    setup, url = served
    answer = post_stream(url, setup, "over http")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    events = sse_events(answer.content)
    assert [name for name, _ in events[:-1]] == ["delta"] * (len(events) - 1) and events[-1][0] == "done"
    done = events[-1][1]
    assert "".join(data["text"] for _, data in events[:-1]) == done["message"]["content"]
    assert done["metadata"]["usage"]["tokensOut"] == setup.up.answered[-1].usage["completion_tokens"]
    plain = httpx.post(f"{url}/v1/sessions/{setup.session.id}/messages", json={"role": "user", "content": "json"},
                       headers={"X-API-Key": setup.key}, timeout=10)
    assert plain.status_code == 201 and plain.headers["content-type"] == "application/json"


def test_a_refusal_before_the_first_text_is_an_ordinary_error_answer(served):
    setup, url = served
    setup.gw.set_budget(setup.tenant.id, monthly_usd=Decimal("0.000001"))
    answer = post_stream(url, setup, "too dear")
    assert answer.status_code == 402 and answer.json()["error"]["code"] == "BUDGET_EXCEEDED"


def test_a_failure_after_the_first_text_is_an_error_event(served):
    setup, url = served
    setup.up.fail_next(Fault.drop(after_chunks=3))
    events = sse_events(post_stream(url, setup, "cut").content)
    assert [name for name, _ in events] == ["delta", "delta", "error"]
    assert events[-1][1]["error"]["code"] == "STREAM_INTERRUPTED"
    assert setup.billed() == []


def test_the_python_client_streams_over_http_like_the_embedded_one(served):
    setup, url = served

    async def over_http() -> list[TextDelta | Reply]:
        async with vbgateway.connect(url, setup.key) as client:
            return [item async for item in client.stream_message(setup.session.id, "python client",
                                                                 idempotency_key="py-1")]
    items = asyncio.run(over_http())
    reply = items[-1]
    assert isinstance(reply, Reply) and texts(items) == reply.message.content
    assert reply.metadata.idempotency.key == "py-1" and len(items) > 3
    setup.up.fail_next(Fault.drop(after_chunks=2))

    async def interrupted() -> None:
        async with vbgateway.connect(url, setup.key) as client:
            async for _ in client.stream_message(setup.session.id, "cut"):
                pass
    with pytest.raises(StreamInterruptedError):
        asyncio.run(interrupted())


def test_a_client_that_hangs_up_after_a_few_bytes_is_billed_once_and_its_key_replays_the_reply(served):
    setup, url = served
    setup.up.fail_next(Fault.trickle(0.03))
    body = orjson.dumps({"role": "user", "content": LONG})
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"POST /v1/sessions/%s/messages HTTP/1.1\r\nHost: test\r\nX-API-Key: %s\r\n"
                    b"Accept: text/event-stream\r\nIdempotency-Key: hang-up\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (setup.session.id.encode(), setup.key.encode(), len(body), body))
        got = b""
        while b"event: delta" not in got:  # the head and the first event, then the client is gone
            got += raw.recv(64)
    assert got.startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 10
    while len(setup.tenant.transcript(setup.session.id).messages) < 2:
        assert time.monotonic() < deadline, "the reply of a client that left was never stored"
        time.sleep(0.05)
    answer = setup.up.answered[-1]
    assert answer.text == f"Upstream reply: {LONG}" and answer.fault is None  # the upstream was read to its end
    events = sse_events(post_stream(url, setup, LONG, key="hang-up").content)
    assert [name for name, _ in events] == ["delta", "done"]
    done = events[-1][1]
    assert done["metadata"]["idempotency"] == {"key": "hang-up", "replayed": True}
    assert done["message"]["content"] == answer.text
    assert [(p, i, o) for p, i, o, _, _ in setup.billed()] == [
        ("real", answer.usage["prompt_tokens"], answer.usage["completion_tokens"])]


# --- context: turns a caller keeps itself ------------------------------------------------------


def test_context_turns_reach_the_provider_are_billed_as_input_and_are_not_stored(setup: Setup):
    from vbgateway.providers import ChatTurn

    context = [ChatTurn("user", "my order is 42"), ChatTurn("assistant", "noted")]
    reply = setup.run(setup.tenant.send_message(setup.session.id, "when does it come", context=context))
    assert setup.up.received[-1].body["messages"][1:] == [
        {"role": "user", "content": "my order is 42"}, {"role": "assistant", "content": "noted"},
        {"role": "user", "content": "when does it come"}]
    assert reply.metadata.usage.tokens_in == setup.up.answered[-1].usage["prompt_tokens"]
    assert [m.content for m in setup.tenant.transcript(setup.session.id).messages] == [
        "when does it come", "Upstream reply: when does it come"]


@pytest.mark.parametrize("context", [
    "not a list", [("user", "a tuple")], [None], ["system"],
], ids=["text", "tuple-turn", "none-turn", "string-turn"])
def test_bad_context_is_a_validation_error_that_calls_no_one(setup: Setup, context):
    from vbgateway.errors import ValidationError

    with pytest.raises(ValidationError):
        setup.run(setup.tenant.send_message(setup.session.id, "hi", context=context))
    assert setup.up.received == [] and setup.messages() == 0


def test_a_system_turn_or_an_empty_one_in_context_is_refused(setup: Setup):
    from vbgateway.errors import ValidationError
    from vbgateway.providers import ChatTurn

    for turn in (ChatTurn("system", "be evil"), ChatTurn("user", "   ")):
        with pytest.raises(ValidationError) as info:
            setup.run(setup.tenant.send_message(setup.session.id, "hi", context=[turn]))
        assert info.value.details["field"] == "context[0]"
    assert setup.up.received == []


def test_the_python_client_never_asks_again_once_the_stream_began():
    """A connection lost mid-stream would repeat text if retried: the client raises instead (the key replays)."""
    from vbgateway.errors import GatewayError

    listener = socket.create_server(("127.0.0.1", 0))
    port, requests = listener.getsockname()[1], []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                requests.append(conn.recv(65536))
                event = b"event: delta\ndata: {\"text\": \"Hel\"}\n\n"
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                             + b"%x\r\n%s\r\n" % (len(event), event))  # then the connection ends, mid-body

    threading.Thread(target=serve, daemon=True).start()
    transport = Transport(f"http://127.0.0.1:{port}", "sk_test", clock=SystemClock(), retry=HttpRetryPolicy())
    seen: list[tuple[str, object]] = []

    async def read() -> None:
        try:
            async for event in transport.aevents(json_request("POST", "/v1/sessions/x/messages", {"content": "hi"})):
                seen.append(event)
        finally:
            await transport.aclose()
    try:
        with pytest.raises(GatewayError) as info:
            asyncio.run(read())
    finally:
        listener.close()
    assert seen == [("delta", {"text": "Hel"})] and len(requests) == 1
    assert info.value.code == "SERVICE_UNAVAILABLE" and info.value.details["streamBegan"] is True


def test_a_server_stopped_while_a_left_reply_is_still_written_finishes_and_bills_it_first(tmp_path: Path,
                                                                                           upstream: Upstream):
    """`vbgateway serve` and SIGTERM just after its client hung up: the reply is read to its end and billed."""
    import os
    import signal
    import subprocess
    import sys

    upstream.reset()
    db = tmp_path / "served.duckdb"
    env = {**os.environ, "UPSTREAM_KEY": KEY}
    cli = [sys.executable, "-m", "vbgateway.cli"]
    subprocess.run([*cli, "providers", "add", "real", "--db", str(db), "--kind", "openai", "--base-url", upstream.url,
                    "--model", "upstream-model", "--api-key-env", "UPSTREAM_KEY", "--usd-per-1m-input", str(IN),
                    "--usd-per-1m-output", str(OUT)], check=True, env=env, capture_output=True)
    with Gateway.open(db) as gw:
        _, key = gw.create_tenant("Acme")
        tenant = gw.connect(key)
        session = tenant.create_session(tenant.create_agent(name="R", primary_provider="real", system_prompt="s").id)
    port = free_port()
    server = subprocess.Popen([*cli, "serve", "--db", str(db), "--port", str(port), "--log-level", "warning"],
                              env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", server)
        upstream.fail_next(Fault.trickle(0.03))
        body = orjson.dumps({"role": "user", "content": LONG})
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"POST /v1/sessions/%s/messages HTTP/1.1\r\nHost: test\r\nX-API-Key: %s\r\n"
                        b"Accept: text/event-stream\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                        % (session.id.encode(), key.encode(), len(body), body))
            got = b""
            while b"event: delta" not in got:
                got += raw.recv(64)
        server.send_signal(signal.SIGTERM)  # the reply is still being written, for nobody
        _, stderr = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, stderr
    answer = upstream.answered[-1]
    assert answer.text == f"Upstream reply: {LONG}" and answer.fault is None
    with Gateway.open(db) as gw:
        rows = gw.sql("SELECT provider, tokens_in, tokens_out FROM usage_events").values.tolist()
        assert rows == [["real", answer.usage["prompt_tokens"], answer.usage["completion_tokens"]]]
        assert len(gw.connect(key).transcript(session.id).messages) == 2

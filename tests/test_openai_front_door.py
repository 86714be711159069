"""The OpenAI-compatible front door, driven by the official ``openai`` package as a real client.

A real uvicorn server on loopback serves the gateway's app over a real
DuckDB file; the agent's provider is a real HTTP ``OpenAICompatible``
provider whose upstream is the local test upstream (it records what it
receives and answers with real ``usage``). Everything runs on the system
clock: the I/O is real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from live_server import LiveServer
from upstream_support import IN, LONG, OUT, upstream_provider

from vbgateway import Gateway, RetryPolicy, SystemClock
from vbgateway.api import create_app
from vbgateway.providers import VendorB
from vbgateway.testing.upstream import Fault, Upstream

FAST = RetryPolicy(timeout_s=2.0, backoff_base_s=0.01, backoff_cap_s=0.02, jitter=0.0)
QUESTION = "where is my order"



class FrontDoor:
    """A gateway whose agent "Support" asks the upstream (no fallback), served on loopback."""

    def __init__(self, path: Path, up: Upstream) -> None:
        self.up = up
        real = upstream_provider(up)
        self.gw = Gateway.open(path, clock=SystemClock(), retry=FAST, seed=7,
                               providers={"real": real, "vendorB": VendorB(seed=2, latency_ms=(0, 0),
                                                                           rate_limit_rate=0.0)})
        tenant, self.key = self.gw.create_tenant("Acme")
        self.tenant_id = tenant.id
        self.agent = self.gw.connect(self.key).create_agent(name="Support", primary_provider="real",
                                                            system_prompt="You are a test.")
        self.server = LiveServer(create_app(self.gw)).__enter__()
        self.base_url = self.server.url + "/v1"
        self.client = openai.OpenAI(base_url=self.base_url, api_key=self.key, max_retries=0)

    def close(self) -> None:
        self.client.close()
        self.server.__exit__(None, None, None)
        self.gw.close()

    def ask(self, content: str = QUESTION, model: str | None = None, **kw: Any) -> Any:
        return self.client.chat.completions.with_raw_response.create(
            model=model or self.agent.id, messages=[{"role": "user", "content": content}], **kw)

    def usage_rows(self) -> list[tuple[Any, ...]]:
        frame = self.gw.sql("SELECT channel, tokens_in, tokens_out, cost_usd, session_id, request_id "
                            "FROM usage_events ORDER BY created_at")
        return [tuple(row) for row in frame.itertuples(index=False)]

    def count(self, table: str) -> int:
        return int(self.gw.sql(f"SELECT count(*) AS n FROM {table}")["n"][0])

    def stored_reply(self, session_id: str) -> str:
        return self.gw.as_tenant(self.tenant_id).transcript(session_id).messages[-1].content


@pytest.fixture
def door(tmp_path: Path, upstream: Upstream) -> Iterator[FrontDoor]:
    upstream.reset()
    made = FrontDoor(tmp_path / "gw.duckdb", upstream)
    yield made
    made.close()


def expected_cost(tokens_in: int, tokens_out: int) -> Decimal:
    return (IN * tokens_in + OUT * tokens_out) / Decimal(1_000_000)


# --- non-stream -----------------------------------------------------------------------------


def test_the_sync_sdk_gets_a_chat_completion_billed_once_with_channel_openai(door):
    raw = door.ask(model="agent:Support")
    answer = raw.parse()
    upstream_answer = door.up.answered[-1]
    assert answer.object == "chat.completion" and answer.model == "agent:Support"
    assert answer.choices[0].message.role == "assistant" and answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content == upstream_answer.text == f"Upstream reply: {QUESTION}"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        upstream_answer.usage["prompt_tokens"], upstream_answer.usage["completion_tokens"])
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    meta = answer.model_extra["vbgateway"]
    session_id = raw.headers["x-session-id"]
    assert answer.id == f"chatcmpl-{meta['requestId']}" and raw.headers["x-request-id"] == meta["requestId"]
    assert meta["sessionId"] == session_id and meta["providerUsed"] == "real" and meta["replayed"] is False
    [(channel, tokens_in, tokens_out, cost, row_session, row_request)] = door.usage_rows()
    cost_wanted = expected_cost(answer.usage.prompt_tokens, answer.usage.completion_tokens)
    assert (channel, tokens_in, tokens_out) == ("openai", answer.usage.prompt_tokens, answer.usage.completion_tokens)
    assert Decimal(str(cost)) == cost_wanted and Decimal(str(meta["costUsd"])) == cost_wanted
    assert (row_session, row_request) == (session_id, meta["requestId"])
    assert abs(answer.created - time.time()) < 60


def test_a_new_session_shows_the_provider_the_requests_earlier_turns_and_stores_only_its_own(door):
    """A stateless app sends its whole conversation each time: the provider sees it, the session keeps the new turn."""
    raw = door.client.chat.completions.with_raw_response.create(model=door.agent.id, messages=[
        {"role": "system", "content": "ignored: the agent's prompt applies"},
        {"role": "user", "content": "earlier question"}, {"role": "assistant", "content": None},  # a tool call
        {"role": "tool", "content": "42", "tool_call_id": "c1"}, {"role": "assistant", "content": "earlier answer"},
        {"role": "user", "content": [{"type": "text", "text": "first part"}, {"type": "text", "text": "second"}]}])
    answer = raw.parse()
    assert door.up.received[-1].body["messages"] == [
        {"role": "system", "content": "You are a test."}, {"role": "user", "content": "earlier question"},
        {"role": "assistant", "content": "earlier answer"}, {"role": "user", "content": "first part\nsecond"}]
    assert answer.usage.prompt_tokens == door.up.answered[-1].usage["prompt_tokens"]  # the context is billed as input
    session_id = raw.headers["x-session-id"]
    stored = door.gw.as_tenant(door.tenant_id).transcript(session_id).messages
    assert [m.content for m in stored] == ["first part\nsecond", "Upstream reply: first part\nsecond"]
    door.ask("go on", extra_headers={"X-Session-Id": session_id})  # the session's own history from here on
    assert [m["content"] for m in door.up.received[-1].body["messages"][1:]] == [
        "first part\nsecond", "Upstream reply: first part\nsecond", "go on"]


def test_the_same_key_with_other_earlier_turns_is_a_conflict(door):
    def ask(earlier: str) -> httpx.Response:
        return httpx.post(door.base_url + "/chat/completions", headers={
            "Authorization": f"Bearer {door.key}", "Idempotency-Key": "ctx-1"}, json={
            "model": door.agent.id, "messages": [{"role": "user", "content": earlier},
                                                 {"role": "user", "content": "now"}]})
    assert ask("before").status_code == 200
    assert ask("before").json()["vbgateway"]["replayed"] is True
    conflict = ask("something else before")
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"
    assert door.count("usage_events") == 1


def test_the_async_sdk_works_the_same(door):
    async def main() -> Any:
        async with openai.AsyncOpenAI(base_url=door.base_url, api_key=door.key, max_retries=0) as client:
            return await asyncio.gather(*[client.chat.completions.create(
                model="agent:Support", messages=[{"role": "user", "content": f"question {i}"}]) for i in range(3)])

    answers = asyncio.run(main())
    assert sorted(a.choices[0].message.content for a in answers) == [f"Upstream reply: question {i}" for i in range(3)]
    assert len({a.model_extra["vbgateway"]["sessionId"] for a in answers}) == 3  # one new session each
    assert [row[0] for row in door.usage_rows()] == ["openai"] * 3


def test_x_session_id_continues_the_conversation_with_its_stored_history(door):
    first = door.ask("my order is 42")
    session_id = first.headers["x-session-id"]
    second = door.ask("and when does it arrive", extra_headers={"X-Session-Id": session_id})
    assert second.headers["x-session-id"] == session_id
    assert door.up.received[-1].body["messages"] == [
        {"role": "system", "content": "You are a test."}, {"role": "user", "content": "my order is 42"},
        {"role": "assistant", "content": "Upstream reply: my order is 42"},
        {"role": "user", "content": "and when does it arrive"}]
    assert door.count("sessions") == 1 and {row[4] for row in door.usage_rows()} == {session_id}


def test_an_idempotency_key_replays_the_first_answer_and_bills_once(door):
    headers = {"Idempotency-Key": "order-42-question"}
    first = door.ask(extra_headers=headers)
    again = door.ask(extra_headers=headers)
    one, two = first.parse(), again.parse()
    assert (two.id, two.choices[0].message.content) == (one.id, one.choices[0].message.content)
    assert two.model_extra["vbgateway"]["replayed"] is True and one.model_extra["vbgateway"]["replayed"] is False
    assert again.headers["x-session-id"] == first.headers["x-session-id"]  # no second session opened
    assert len(door.up.received) == 1 and len(door.usage_rows()) == 1 and door.count("sessions") == 1
    with pytest.raises(openai.ConflictError) as info:
        door.ask("another question", extra_headers=headers)
    assert info.value.code == "idempotency_conflict" and len(door.usage_rows()) == 1


# --- streaming ------------------------------------------------------------------------------


@pytest.mark.parametrize("include_usage", [False, True])
def test_a_stream_of_chunks_concatenates_to_the_stored_reply(door, include_usage):
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    with door.client.chat.completions.with_streaming_response.create(
            model="agent:Support", messages=[{"role": "user", "content": LONG}], stream=True, **options) as raw:
        session_id = raw.headers["x-session-id"]
        chunks = list(raw.parse())
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 10  # really streamed
    assert text == door.stored_reply(session_id) == f"Upstream reply: {LONG}"
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finish] == ["stop"]
    [(channel, tokens_in, tokens_out, cost, _, _)] = door.usage_rows()
    assert channel == "openai" and Decimal(str(cost)) == expected_cost(tokens_in, tokens_out)
    if include_usage:
        last = chunks[-1]
        assert last.choices == [] and (last.usage.prompt_tokens, last.usage.completion_tokens) == (tokens_in,
                                                                                                    tokens_out)
    else:
        assert all(c.usage is None for c in chunks)


def test_a_stream_cut_off_upstream_after_its_first_text_raises_in_the_sdk_and_bills_nothing(door):
    door.up.fail_next(Fault.drop(after_chunks=3))
    stream = door.client.chat.completions.create(model=door.agent.id, messages=[{"role": "user", "content": LONG}],
                                                 stream=True)
    with pytest.raises(openai.APIError) as info:
        for _ in stream:
            pass
    assert "stream_interrupted" in str(info.value.body) and door.usage_rows() == []


def test_a_client_that_leaves_mid_stream_is_billed_once_and_its_key_replays_the_whole_reply(door):
    door.up.fail_next(Fault.trickle(0.05))
    body = {"model": door.agent.id, "messages": [{"role": "user", "content": LONG}], "stream": True}
    headers = {"Authorization": f"Bearer {door.key}", "Idempotency-Key": "leave-early"}
    with httpx.Client(timeout=20) as raw, raw.stream("POST", door.base_url + "/chat/completions", json=body,
                                                     headers=headers) as response:
        assert response.status_code == 200
        received = b""
        for piece in response.iter_raw():
            received += piece
            if received.count(b"data: ") >= 3:
                break  # a few events in: the client goes away
        session_id = response.headers["x-session-id"]
    assert b"[DONE]" not in received
    deadline = time.monotonic() + 20
    while not door.usage_rows() and time.monotonic() < deadline:
        time.sleep(0.05)
    full = f"Upstream reply: {LONG}"
    [(channel, tokens_in, tokens_out, cost, row_session, _)] = door.usage_rows()
    assert (channel, row_session) == ("openai", session_id) and door.stored_reply(session_id) == full
    assert Decimal(str(cost)) == expected_cost(tokens_in, tokens_out)
    replay = door.ask(LONG, extra_headers={"Idempotency-Key": "leave-early"}).parse()
    assert replay.choices[0].message.content == full and replay.model_extra["vbgateway"]["replayed"] is True
    assert len(door.usage_rows()) == 1 and len(door.up.received) == 1


# --- errors ---------------------------------------------------------------------------------


def test_a_bad_key_is_an_authentication_error(door):
    client = openai.OpenAI(base_url=door.base_url, api_key="sk_not_a_key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model=door.agent.id, messages=[{"role": "user", "content": "hi"}])
    assert (info.value.code, info.value.type) == ("invalid_api_key", "invalid_request_error")
    assert door.up.received == []


def test_x_api_key_works_as_well_as_bearer(door):
    answer = httpx.post(door.base_url + "/chat/completions", headers={"X-API-Key": door.key},
                        json={"model": door.agent.id, "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "Upstream reply: hi"


def test_an_unknown_model_is_not_found_and_opens_no_session(door):
    other_tenant_key = door.gw.create_tenant("Globex")[1]
    foreign = door.gw.connect(other_tenant_key).create_agent(name="Theirs", primary_provider="vendorB",
                                                             system_prompt="x")
    for model in ("agent:Nobody", "agt_doesnotexist0000000000", foreign.id):
        with pytest.raises(openai.NotFoundError) as info:
            door.ask(model=model)
        assert (info.value.code, info.value.param) == ("model_not_found", "model")
    assert door.count("sessions") == 0


def test_an_agent_name_that_several_agents_carry_is_refused_not_guessed(door):
    door.gw.connect(door.key).create_agent(name="Support", primary_provider="vendorB", system_prompt="Twin.")
    with pytest.raises(openai.BadRequestError) as info:
        door.ask(model="agent:Support")
    assert info.value.code == "model_ambiguous" and door.agent.id in info.value.message


def test_agent_names_follow_creations_and_renames_at_once(door):
    door.ask(model="agent:Support")  # the tenant's names are now known to the door
    fresh = door.gw.connect(door.key).create_agent(name="Fresh", primary_provider="vendorB", system_prompt="x")
    assert door.ask(model="agent:Fresh").parse().model_extra["vbgateway"]["agentId"] == fresh.id
    door.gw.connect(door.key).update_agent(door.agent.id, name="Helpdesk")
    with pytest.raises(openai.NotFoundError):
        door.ask(model="agent:Support")
    assert door.ask(model="agent:Helpdesk").parse().model_extra["vbgateway"]["agentId"] == door.agent.id


@pytest.mark.parametrize(("change", "param"), [
    ({"n": 2}, "n"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format.type"),
    ({"temperature": "hot"}, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "no"}]}, "messages[1].role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content"),
    ({"messages": []}, "messages"),
    ({"user": ""}, "user"),
    ({"messages": [{"role": "assistant", "content": "a\x00b"}, {"role": "user", "content": "hi"}]},
     "messages[0].content"),
], ids=["n", "tools", "json", "temperature-type", "last-not-user", "image", "no-messages", "empty-user",
        "nul-in-earlier-turn"])
def test_requests_the_gateway_cannot_honour_are_clear_400s_that_change_nothing(door, change, param):
    body = {"model": door.agent.id, "messages": [{"role": "user", "content": "hi"}], **change}
    answer = httpx.post(door.base_url + "/chat/completions", headers={"Authorization": f"Bearer {door.key}"},
                        json=body)
    error = answer.json()["error"]
    assert answer.status_code == 400 and error["type"] == "invalid_request_error" and error["param"] == param
    assert door.up.received == [] and door.count("sessions") == 0


def test_unknown_and_sampling_parameters_are_accepted_and_ignored(door):
    answer = door.client.chat.completions.create(
        model=door.agent.id, messages=[{"role": "user", "content": "hi"}], temperature=0.2, top_p=0.9,
        stop=["x"], seed=3, user="customer-7", extra_body={"some_future_option": True})
    assert answer.choices[0].message.content == "Upstream reply: hi" and answer.choices[0].finish_reason == "stop"
    assert set(door.up.received[-1].body) & {"temperature", "top_p", "stop", "seed", "some_future_option"} == set()
    session = answer.model_extra["vbgateway"]["sessionId"]
    assert door.gw.as_tenant(door.tenant_id).get_session(session).customer_id == "customer-7"


def test_max_tokens_bounds_the_reply_below_the_agents_own_bound(door):
    asked = [({"max_tokens": 5}, 5), ({"max_completion_tokens": 7, "max_tokens": 9}, 7),
             ({"max_tokens": 100_000}, door.agent.max_output_tokens), ({}, door.agent.max_output_tokens)]
    for params, sent in asked:
        door.client.chat.completions.create(model=door.agent.id, messages=[{"role": "user", "content": "hi"}],
                                            **params)
        assert door.up.received[-1].body["max_tokens"] == sent, params
    with pytest.raises(openai.BadRequestError) as info:
        door.ask(max_tokens=0)
    assert info.value.param == "max_tokens"


def test_a_reply_cut_at_max_tokens_finishes_with_length_and_its_bound_is_reserved(door):
    agent = door.gw.connect(door.key).create_agent(name="Sim", primary_provider="vendorB", system_prompt="Hi.")
    full = door.client.chat.completions.create(model=agent.id, messages=[{"role": "user", "content": "hi"}])
    assert full.choices[0].finish_reason == "stop" and full.usage.completion_tokens > 3
    cut = door.client.chat.completions.create(model=agent.id, messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=3)
    assert (cut.choices[0].finish_reason, cut.usage.completion_tokens) == ("length", 3)
    assert len(cut.choices[0].message.content) <= 12
    chunks = list(door.client.chat.completions.create(model=agent.id, messages=[{"role": "user", "content": "hi"}],
                                                      max_tokens=3, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == door.stored_reply(chunks[-1].model_extra["vbgateway"]["sessionId"])
    # the budget reserves the request's bound, not the agent's 1024 tokens
    spent = sum((Decimal(str(row[3])) for row in door.usage_rows()), Decimal(0))
    door.gw.set_budget(door.tenant_id, spent + Decimal("0.0002"))
    with pytest.raises(openai.APIStatusError) as refused:
        door.client.chat.completions.create(model=agent.id, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 402
    admitted = door.client.chat.completions.create(model=agent.id, messages=[{"role": "user", "content": "hi"}],
                                                   max_tokens=3)
    assert admitted.choices[0].finish_reason == "length"


def test_the_same_key_with_another_max_tokens_is_a_conflict(door):
    door.ask(extra_headers={"Idempotency-Key": "k-max"}, max_tokens=5)
    assert door.ask(extra_headers={"Idempotency-Key": "k-max"}, max_tokens=5).parse().model_extra[
        "vbgateway"]["replayed"]
    with pytest.raises(openai.ConflictError):
        door.ask(extra_headers={"Idempotency-Key": "k-max"}, max_tokens=6)


def test_malformed_json_is_a_400(door):
    answer = httpx.post(door.base_url + "/chat/completions", content=b'{"model": ',
                        headers={"Authorization": f"Bearer {door.key}", "Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "validation_error"


def test_an_exhausted_budget_is_a_402_in_openais_shape(door):
    door.gw.set_budget(door.tenant_id, Decimal("0.000001"))
    with pytest.raises(openai.APIStatusError) as info:
        door.ask()
    error = info.value
    assert (error.status_code, error.code, error.type) == (402, "budget_exceeded", "insufficient_quota")
    assert door.up.received == []


def test_a_refused_call_leaves_no_session_and_its_key_opens_one_once_admitted(door):
    door.gw.set_budget(door.tenant_id, Decimal("0.000001"))
    for _ in range(3):  # an app retrying while refused: no session piles up
        with pytest.raises(openai.APIStatusError) as info:
            door.ask(extra_headers={"Idempotency-Key": "order-7"})
        assert info.value.status_code == 402 and "x-session-id" not in info.value.response.headers
    with pytest.raises(openai.APIStatusError) as streamed:
        door.client.chat.completions.create(model=door.agent.id, messages=[{"role": "user", "content": "hi"}],
                                            stream=True)
    assert streamed.value.status_code == 402 and "x-session-id" not in streamed.value.response.headers
    assert door.count("sessions") == 0
    refusals = door.gw.sql("SELECT code, session_id FROM request_refusals")
    assert list(refusals.code) == ["BUDGET_EXCEEDED"] * 4 and refusals.session_id.isna().all()
    door.gw.set_budget(door.tenant_id, None)
    answer = door.ask(extra_headers={"Idempotency-Key": "order-7"})
    again = door.ask(extra_headers={"Idempotency-Key": "order-7"})
    session_id = answer.headers["x-session-id"]
    assert again.headers["x-session-id"] == session_id and again.parse().model_extra["vbgateway"]["replayed"]
    assert door.count("sessions") == 1 and door.stored_reply(session_id) == "Upstream reply: " + QUESTION
    assert len(door.usage_rows()) == 1


def test_a_rate_limit_is_a_rate_limit_error_with_retry_after(door):
    door.gw.set_rate_limit(door.tenant_id, requests_per_minute=1)
    door.ask()
    with pytest.raises(openai.RateLimitError) as info:
        door.ask("again")
    assert info.value.code == "rate_limit_exceeded" and int(info.value.response.headers["retry-after"]) >= 1
    assert len(door.usage_rows()) == 1 and door.count("sessions") == 1


def test_every_provider_failing_is_a_502(door):
    door.up.fail_next(*[Fault.status(500)] * 5)
    with pytest.raises(openai.InternalServerError) as info:
        door.ask()
    assert (info.value.status_code, info.value.code, info.value.type) == (502, "all_providers_failed", "server_error")
    assert door.usage_rows() == []
    session_id = info.value.response.headers["x-session-id"]  # kept: it holds the attempt log
    events = door.gw.as_tenant(door.tenant_id).transcript(session_id).events
    assert [e.status for e in events] == ["failed"] * FAST.attempts and door.count("messages") == 0


def test_a_key_without_the_chat_scope_is_refused(door):
    _, reader = door.gw.create_api_key(door.tenant_id, scopes=["agents:read"])
    client = openai.OpenAI(base_url=door.base_url, api_key=reader, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model=door.agent.id, messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "insufficient_scope"
    assert [m.id for m in client.models.list()] == [door.agent.id]  # agents:read is what the models need


def test_a_session_of_another_agent_is_refused(door):
    other = door.gw.connect(door.key).create_agent(name="Other", primary_provider="vendorB", system_prompt="x")
    session_id = door.ask().headers["x-session-id"]
    with pytest.raises(openai.BadRequestError) as info:
        door.ask(model=other.id, extra_headers={"X-Session-Id": session_id})
    assert (info.value.code, info.value.param) == ("session_agent_mismatch", "X-Session-Id")
    with pytest.raises(openai.NotFoundError) as missing:
        door.ask(extra_headers={"X-Session-Id": "ses_doesnotexist00000000"})
    assert missing.value.code == "session_not_found"


# --- models ---------------------------------------------------------------------------------


def test_models_lists_the_tenants_agents(door):
    second = door.gw.connect(door.key).create_agent(name="Billing", primary_provider="vendorB", system_prompt="x")
    models = door.client.models.list()
    assert sorted(m.id for m in models) == sorted([door.agent.id, second.id])
    assert {m.object for m in models} == {"model"} and {m.owned_by for m in models} == {"Acme"}
    assert {m.model_extra["vbgateway"]["alias"] for m in models} == {"agent:Support", "agent:Billing"}
    assert door.client.models.retrieve("agent:Billing").id == second.id
    with pytest.raises(openai.NotFoundError):
        door.client.models.retrieve("agent:Nobody")

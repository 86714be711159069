"""The Try-it chat streams: the reply's bubble shows at once and grows as the provider writes.

A real gateway on a real DuckDB file whose agent asks the loopback
OpenAI-compatible upstream (a real HTTP server; ``Fault.trickle`` spaces its
events so the growth can be watched), the panel run as a kernel runs it (a
click schedules the send on the running loop), and every change of the
bubble's value recorded through ``observe``, as the browser would receive it.
The same over the database's local service, where the panel's client reads
Server-Sent Events.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from upstream_support import LONG, upstream_provider
from upstream_support import UPSTREAM_KEY as KEY

from vbgateway import Gateway, RetryPolicy, SystemClock
from vbgateway.client.service import stop_service
from vbgateway.models import Reply
from vbgateway.providers import VendorB
from vbgateway.providers.admin import add_provider
from vbgateway.testing.upstream import Fault, Upstream
from vbgateway.widgets import ChatPanel, LoginPanel, open_workbench
from vbgateway.widgets.chat_stream import DRAW_INTERVAL_S
from vbgateway.widgets.chat_view import bubble_html, reply_meta_html, writing_html

FAST = RetryPolicy(timeout_s=1.0, backoff_base_s=0.01, backoff_cap_s=0.02, jitter=0.0)



class Drawn:
    """Every value each bubble of a conversation takes after it is shown, with the time it took it."""

    def __init__(self, chat: ChatPanel) -> None:
        self.values: dict[int, list[tuple[float, str]]] = {}
        chat.conversation.observe(self._added, "children")

    def _added(self, change: dict) -> None:
        for child in change["new"]:
            if id(child) not in self.values:
                self._watch(child)

    def _watch(self, child) -> None:
        seen = self.values[id(child)] = [(time.monotonic(), child.value)]
        child.observe(lambda change: seen.append((time.monotonic(), change["new"])), "value")

    def of(self, bubble) -> list[str]:
        return [value for _, value in self.values[id(bubble)]]

    def times(self, bubble) -> list[float]:
        return [at for at, _ in self.values[id(bubble)]]


class Streaming:
    """A gateway on the system clock whose agent streams from the upstream first and asks vendorB second."""

    def __init__(self, path: Path, upstream: Upstream, panels: list) -> None:
        upstream.reset()
        self.up = upstream
        self.real = upstream_provider(upstream)
        self.gw = Gateway.open(path, clock=SystemClock(), retry=FAST, seed=7,
                               providers={"real": self.real, "vendorB": VendorB(seed=2, latency_ms=(0, 0),
                                                                                rate_limit_rate=0.0)})
        _, key = self.gw.create_tenant("Acme")
        self.login = LoginPanel(self.gw, api_key=key)
        agent = self.login.client.create_agent(name="Streamer", primary_provider="real", fallback_provider="vendorB",
                                               system_prompt="You are a test.")
        self.chat = ChatPanel(self.login)
        self.chat.agent.value = agent.id
        panels.extend([self.login, self.chat])
        self.drawn = Drawn(self.chat)

    def send(self, text: str) -> Reply | None:
        """Type ``text`` and press Send inside a running loop (a kernel's), and wait for the reply."""
        async def kernel() -> Reply | None:
            self.chat.message.value = text
            self.chat.send_button.click()
            assert self.chat.task is not None and "vb-typing" in self.chat.conversation.children[-1].value
            try:
                return await self.chat.task
            finally:
                await self.real.aclose()
        return asyncio.run(kernel())

    def resend(self) -> Reply | None:
        async def kernel() -> Reply | None:
            self.chat.resend_button.click()
            try:
                return await self.chat.task
            finally:
                await self.real.aclose()
        return asyncio.run(kernel())

    def billed(self) -> int:
        return int(self.gw.sql("SELECT count(*) FROM usage_events").iloc[0, 0])

    def stored(self) -> list[str]:
        return [m.content for m in self.login.client.transcript(self.chat.session.id).messages]


@pytest.fixture
def streaming(tmp_path: Path, upstream: Upstream, panels: list) -> Iterator[Streaming]:
    made = Streaming(tmp_path / "gw.duckdb", upstream, panels)
    yield made
    made.gw.close()


def growing(values: list[str], final: str) -> list[str]:
    """The texts of the intermediate (typing) states, checked to be prefixes of ``final`` that only grow."""
    texts = []
    for value in values:
        if "vb-typing" not in value:
            continue
        text = next(final[:n] for n in range(len(final) + 1) if writing_html(final[:n]) == value)
        texts.append(text)
    assert all(len(a) < len(b) for a, b in itertools.pairwise(texts)), texts
    return texts


def test_the_reply_grows_as_it_is_written_then_shows_the_stored_reply_with_its_badges(streaming: Streaming):
    streaming.up.fail_next(Fault.trickle(0.08))  # events further apart than the panel's drawing interval
    reply = streaming.send("where is my order")
    assert reply is not None and streaming.chat.status.value == "" and not streaming.chat.busy
    bubble = streaming.chat.conversation.children[-1]
    values = streaming.drawn.of(bubble)
    texts = growing(values, reply.message.content)
    assert texts[0] == "" and len([t for t in texts if t]) >= 3  # typing, then text at least three times
    stored = streaming.stored()
    assert stored == ["where is my order", "Upstream reply: where is my order"] == [stored[0], reply.message.content]
    assert values[-1] == bubble.value == bubble_html("assistant", stored[1]) + reply_meta_html(reply)
    usage = streaming.up.answered[-1].usage
    assert usage is not None and f"tokens {usage['prompt_tokens']} in / {usage['completion_tokens']} out" in bubble.value
    assert "real" in bubble.value and "vb-typing" not in bubble.value and streaming.billed() == 1


def test_a_fast_stream_is_drawn_at_most_once_per_interval_and_then_whole(streaming: Streaming):
    streaming.up.fail_next(Fault.trickle(0.005))
    reply = streaming.send(LONG)
    assert reply is not None
    bubble = streaming.chat.conversation.children[-1]
    values, times = streaming.drawn.of(bubble), streaming.drawn.times(bubble)
    typing = [at for at, value in zip(times, values, strict=True) if "vb-typing" in value][1:]  # after the first
    assert all(b - a >= DRAW_INTERVAL_S * 0.98 for a, b in itertools.pairwise(typing))
    deltas = len(reply.message.content.split(" "))  # the upstream writes word by word
    assert len(typing) < deltas / 2  # coalesced, not one comm message per word
    growing(values, reply.message.content)
    assert values[-1] == bubble_html("assistant", reply.message.content) + reply_meta_html(reply)


def test_a_stream_cut_off_keeps_its_text_marked_and_the_same_key_sends_it_again(streaming: Streaming):
    chat = streaming.chat
    chat.use_key.value = True
    streaming.up.fail_next(Fault.drop(after_chunks=3))
    assert streaming.send("cut me off") is None
    user, bubble = chat.conversation.children
    assert "Upstream reply: " in bubble.value and "interrupted" in bubble.value
    assert "STREAM_INTERRUPTED" in bubble.value and "nothing billed" in bubble.value
    assert "vb-typing" not in bubble.value and "not stored" in user.value
    assert "STREAM_INTERRUPTED" in chat.status.value and "SERVER_ERROR" in chat.status.value  # the attempt
    assert chat.replies == [] and streaming.billed() == 0 and streaming.stored() == []
    assert not chat.resend_button.disabled and not chat.busy
    key = chat.last_keyed["key"]

    again = streaming.resend()  # nothing was stored under the key: the message is sent anew, billed once
    assert again is not None and again.metadata.idempotency.key == key and not again.metadata.idempotency.replayed
    assert chat.status.value == "" and streaming.billed() == 1
    assert chat.conversation.children[-1].value == bubble_html("assistant", again.message.content) + \
        reply_meta_html(again)
    replay = streaming.resend()  # now the key replays the stored reply, billing nothing
    assert replay is not None and replay.metadata.idempotency.replayed and replay.message.id == again.message.id
    assert "replayed · no new charge" in chat.conversation.children[-1].value and streaming.billed() == 1


def test_a_refusal_before_any_text_leaves_no_reply_bubble(streaming: Streaming):
    streaming.gw.set_budget(streaming.login.client.tenant.id, monthly_usd=Decimal("0.000001"))
    assert streaming.send("too dear") is None
    (user,) = streaming.chat.conversation.children
    assert "not delivered" in user.value and "BUDGET_EXCEEDED" in streaming.chat.status.value


# --- over the local service: the panel's client reads Server-Sent Events ---------------------------


@pytest.fixture
def served(tmp_path: Path, upstream: Upstream, panels: list, monkeypatch: pytest.MonkeyPatch) -> Iterator[ChatPanel]:
    upstream.reset()
    monkeypatch.setenv("VB_TEST_UPSTREAM_KEY", KEY)  # the service reads the key from its environment
    db = tmp_path / "data" / "served.duckdb"
    db.parent.mkdir()
    gw = Gateway.open(db)
    _, key = gw.create_tenant("Acme")
    add_provider(gw, "real", base_url=upstream.url, model="upstream-model", api_key_env="VB_TEST_UPSTREAM_KEY",
                 usd_per_1m_input="0.15", usd_per_1m_output="0.60")
    agent = gw.connect(key).create_agent(name="Streamer", primary_provider="real", fallback_provider="vendorB",
                                         system_prompt="You are a test.")
    gw.close()
    bench = open_workbench(db, key)
    login = LoginPanel(bench.gateway, api_key=bench.api_key)
    chat = ChatPanel(login)
    chat.agent.value = agent.id
    panels.extend([login, chat])
    yield chat
    stop_service(db)


def test_over_the_service_the_reply_streams_too(served: ChatPanel, upstream: Upstream):
    chat = served
    drawn = Drawn(chat)

    async def kernel(text: str) -> Reply | None:
        chat.message.value = text
        chat.send_button.click()
        assert chat.task is not None
        return await chat.task

    upstream.fail_next(Fault.trickle(0.08))
    reply = asyncio.run(kernel("over http"))
    assert reply is not None and reply.metadata.provider_used == "real" and chat.status.value == ""
    bubble = chat.conversation.children[-1]
    texts = growing(drawn.of(bubble), reply.message.content)
    assert len([t for t in texts if t]) >= 2
    stored = [m.content for m in chat.client.transcript(chat.session.id).messages]
    assert stored == ["over http", "Upstream reply: over http"]
    assert bubble.value == bubble_html("assistant", stored[1]) + reply_meta_html(reply)

    upstream.fail_next(Fault.drop(after_chunks=3))
    assert asyncio.run(kernel("cut")) is None
    bubble = chat.conversation.children[-1]
    assert "Upstream reply: " in bubble.value and "STREAM_INTERRUPTED" in bubble.value
    assert "STREAM_INTERRUPTED" in chat.status.value and len(chat.replies) == 1

"""The send path on its own: a ``MessageSender`` given a store, providers, policy, clock, ids and prices.

No ``Gateway`` is built here: the sender depends only on what it uses, so
it can be assembled (and changed) without the rest of the facade.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from vbgateway import RetryPolicy, VirtualClock
from vbgateway.errors import AgentNotFoundError, SessionNotFoundError
from vbgateway.ids import IdFactory
from vbgateway.messaging import MessageSender, SessionState
from vbgateway.models import Agent, Session
from vbgateway.pricing import PriceTable
from vbgateway.providers import VendorA, VendorB
from vbgateway.providers.base import ChatTurn, estimate_tokens
from vbgateway.store import Store
from vbgateway.store.tables import SessionRow

START = datetime(2026, 1, 1, tzinfo=UTC)
AGENT = Agent(id="agt_1", tenant_id="tnt_1", name="Support", primary_provider="vendorA", fallback_provider="vendorB",
              system_prompt="You are helpful.", enabled_tools=[], created_at=START, updated_at=START)


@pytest.fixture
def parts(tmp_path):
    clock = VirtualClock(start=START)
    store = Store(tmp_path / "s.duckdb", now=START, commit_window_s=clock.commit_window_s)
    providers = {"vendorA": VendorA(seed=1).bind(clock), "vendorB": VendorB(seed=2).bind(clock)}
    agents = {AGENT.id: AGENT}

    def find_agent(tenant_id: str, agent_id: str) -> Agent | None:
        agent = agents.get(agent_id)
        return agent if agent is not None and agent.tenant_id == tenant_id else None

    sender = MessageSender(store=store, providers=providers, retry=RetryPolicy(), clock=clock, ids=IdFactory(7),
                           prices=PriceTable(), agents=find_agent, rng=random.Random(7))
    yield sender, store, clock, agents
    store.close()


def open_session(store: Store, sender: MessageSender, session_id: str = "ses_1", *, warm: bool = True) -> None:
    store.commit([SessionRow(session_id, "tnt_1", AGENT.id, None, "active", "{}", START, START)])
    if warm:
        session = Session(id=session_id, tenant_id="tnt_1", agent_id=AGENT.id, customer_id=None, status="active",
                          metadata={}, created_at=START, last_activity_at=START)
        sender.remember(SessionState(session, [], 0, START))


def test_a_sender_assembled_without_a_gateway_bills_one_reply_in_its_store(parts) -> None:
    sender, store, clock, _ = parts
    open_session(store, sender, warm=False)  # loaded from the store on first use
    reply = clock.run(sender.send("tnt_1", "ses_1", "Hello", channel="chat", idempotency_key=None, fingerprint=""))
    assert reply.metadata.usage.cost_usd > Decimal(0)
    assert [m.role for m in store.messages("ses_1")] == ["user", "assistant"]
    [(cost, message_id)] = store.query_rows("SELECT cost_usd, message_id FROM usage_events")
    assert (cost, message_id) == (reply.metadata.usage.cost_usd, reply.message.id)


def test_the_sender_finds_agents_and_sessions_only_through_what_it_was_given(parts) -> None:
    sender, store, clock, agents = parts
    open_session(store, sender)
    with pytest.raises(SessionNotFoundError):  # another tenant's session is unknown to this one
        clock.run(sender.send("tnt_2", "ses_1", "Hello", channel="chat", idempotency_key=None, fingerprint=""))
    agents.clear()  # the agent lookup it was handed no longer knows the agent
    with pytest.raises(AgentNotFoundError):
        clock.run(sender.send("tnt_1", "ses_1", "Hello", channel="chat", idempotency_key=None, fingerprint=""))
    assert store.query_rows("SELECT count(*) FROM usage_events") == [(0,)]


def test_a_callers_token_bound_lowers_the_agents_and_never_raises_it(parts) -> None:
    sender, store, clock, agents = parts
    agents[AGENT.id] = AGENT.model_copy(update={"max_output_tokens": 5})  # every template is longer than 5 tokens
    open_session(store, sender)

    def reply_tokens(bound: int | None) -> int:
        reply = clock.run(sender.send("tnt_1", "ses_1", "Hello", channel="chat", idempotency_key=None,
                                      fingerprint="", max_output_tokens=bound))
        return reply.metadata.usage.tokens_out

    assert [reply_tokens(bound) for bound in (None, 2, 5, 50)] == [5, 2, 5, 5]


@pytest.mark.parametrize("bound", [0, -1, True, 2.5, "3"])
def test_a_bad_token_bound_is_refused_at_the_door_and_sends_nothing(tmp_path, bound) -> None:
    from vbgateway import Gateway, GatewayError

    with Gateway.open(tmp_path / "g.duckdb", clock=VirtualClock(start=START)) as gw:
        _, key = gw.create_tenant("Acme")
        client = gw.connect(key)
        agent = client.create_agent(name="S", primary_provider="vendorB", system_prompt="Hi.")
        session = client.create_session(agent.id)
        with pytest.raises(GatewayError) as info:
            gw.clock.run(client.send_message(session.id, "Hello", max_output_tokens=bound))
        assert (info.value.code, info.value.details["field"]) == ("VALIDATION_ERROR", "maxOutputTokens")
        assert gw.sql("SELECT count(*) AS n FROM messages").n[0] == 0


def test_input_tokens_follow_the_whole_conversation_warm_cold_and_with_context(parts) -> None:
    """The session keeps its characters counted as it grows; the bill must match a fresh count each time."""
    sender, store, clock, _ = parts
    open_session(store, sender)

    def send(content: str, context: tuple[ChatTurn, ...] = ()) -> int:
        reply = clock.run(sender.send("tnt_1", "ses_1", content, channel="chat", idempotency_key=None,
                                      fingerprint="", context=context))
        return reply.metadata.usage.tokens_in

    def expected(content: str, context: tuple[ChatTurn, ...] = ()) -> int:
        earlier = [m.content for m in store.messages("ses_1")]
        chars = len(AGENT.system_prompt) + sum(map(len, earlier)) + sum(len(t.content) for t in context)
        return estimate_tokens(chars + len(content))

    for content in ("Hello", "Where is my order número 42?", "x" * 333):
        want = expected(content)
        assert send(content) == want
    sender.forget("ses_1")  # cold: the count starts again from the stored messages
    want = expected("And now?")
    assert send("And now?") == want
    context = (ChatTurn("user", "earlier question " * 7), ChatTurn("assistant", "earlier answer"))
    want = expected("With context", context)
    assert send("With context", context) == want

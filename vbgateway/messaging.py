"""The send path: one user message in, one billed assistant reply out.

Order of work for ``send``:
1. validate, resolve the session inside the tenant (cache, else store);
2. idempotency: a key in flight is joined, a stored key is replayed, a key
   with a different request is a conflict;
3. admission, before any provider is called: reserve the most the request
   can cost in the tenant's budget, or refuse it with BUDGET_EXCEEDED
   (governance/budgets.py); then the rate limits of the tenant and the key
   (governance/rate_limits.py), whose refusal gives the reservation back.
   Both are synchronous (nothing awaits between them) and a refusal is
   noted in memory (governance/refusals.py), never in DuckDB. In this
   order neither leaks: a reservation can be given back exactly, while an
   admitted request stays counted by its rate limit, so a request the budget
   refuses is never counted as one. Then call the provider chain
   (reliability.py, with the circuit breakers) and settle the token charge;
4. build the reply and commit user message, assistant message, attempts,
   usage event, idempotency record (and any budget alert it crosses) as ONE
   journal record, its cost replacing its reservation;
5. only then update the in-memory session state and answer.

A failure before step 4 commits only the attempt log (and any circuit
breaker transitions); nothing is billed, the reservation is given back, the
tokens charged to the rate limits too, and the key stays free to be retried.

A drafted session (``SessionState.unsaved``) is stored with the first record
committed for it, the reply or the attempt log: a request refused before any
provider is called leaves no session behind (its refusal names none).
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import (
    AgentNotFoundError,
    IdempotencyConflictError,
    SessionNotFoundError,
    ValidationError,
)
from .governance.budgets import BudgetLedger, Hold
from .ids import IdFactory, is_id
from .message_input import reply_from_record, reply_to_record
from .metrics import GatewayMetrics
from .models import Agent, Idempotency, Reply, Session
from .providers.base import ChatTurn, ProviderRequest, turn_chars
from .reliability import AttemptLog, ChainResult, call_chain
from .store.tables import (
    IdempotencyRow,
    JournalRow,
    MessageRow,
    ProviderCallRow,
    SessionActivityRow,
    SessionRow,
    UsageEventRow,
)
from .streaming import ReplySink, ReplyStream, keep_until_done

if TYPE_CHECKING:
    from .clock import Clock
    from .governance import RateLimiter
    from .governance.breaker import Breakers
    from .governance.rate_limits import Ticket
    from .pricing import PriceTable
    from .providers.base import Provider
    from .reliability import RetryPolicy
    from .store import Store

__all__ = ["MessageSender", "SessionState"]

USAGE_EVENT_INDEX = 1023  # attempt events of a request count up from 0; its usage event takes the last slot
# A request's two messages are derived from its id too: as unique, and two random draws fewer per reply.
USER_MESSAGE_INDEX, REPLY_MESSAGE_INDEX = 0, 1
_NO_KEY = Idempotency(key=None, replayed=False)  # frozen, shared by every reply sent without a key
SESSION_CACHE_SIZE = 50_000  # warm sessions; a miss costs two DuckDB queries


@dataclass(slots=True)
class SessionState:
    """What the send path needs of a session, kept warm between messages."""

    session: Session
    history: list[ChatTurn] = field(default_factory=list)
    next_position: int = 0
    last_activity_at: datetime | None = None
    # A drafted session's row (``TenantClient.draft_session``), committed with the first record sent in it.
    unsaved: SessionRow | None = None
    # The characters of ``history``, counted as it grows: a request's input size without a pass over its turns.
    history_chars: int = -1

    def __post_init__(self) -> None:
        if self.history_chars < 0:
            self.history_chars = turn_chars(self.history)


class MessageSender:
    """Owns the session cache, the in-flight idempotency map and the send path.

    It is given what it uses, not the gateway: the store, the providers by
    name, the retry policy, the clock, the id factory, the prices, a way to
    find a tenant's agent (the gateway's cache) and the random generator of
    retry jitter (seeded with the gateway).
    """

    def __init__(self, *, store: Store, providers: Mapping[str, Provider], retry: RetryPolicy, clock: Clock,
                 ids: IdFactory, prices: PriceTable, agents: Callable[[str, str], Agent | None],
                 rng: random.Random, breakers: Breakers | None = None, limits: RateLimiter | None = None,
                 budgets: BudgetLedger | None = None, metrics: GatewayMetrics | None = None) -> None:
        self._store = store
        self._metrics = metrics or GatewayMetrics()
        self._providers = providers
        self._retry = retry
        self._breakers = breakers
        self._clock = clock
        self._ids = ids
        self._prices = prices
        self._agent_for = agents
        self._rng = rng
        self._limits = limits
        self._budgets = budgets if budgets is not None else BudgetLedger(clock, prices)
        self._sessions: OrderedDict[str, SessionState] = OrderedDict()
        self._in_flight: dict[tuple[str, str], tuple[str, asyncio.Future[Reply]]] = {}
        self._detached: set[asyncio.Task[Reply]] = set()  # streamed sends whose reader left, until they end
        self._keep_detached = keep_until_done(self._detached)

    # ------------------------------------------------------------------ sessions
    def remember(self, state: SessionState) -> None:
        self._sessions[state.session.id] = state
        self._sessions.move_to_end(state.session.id)
        while len(self._sessions) > SESSION_CACHE_SIZE:
            self._sessions.popitem(last=False)

    def forget(self, session_id: str) -> None:
        """Drop a session's warm state (its conversation ended); a later message reloads it from the store."""
        self._sessions.pop(session_id, None)

    def forget_unsaved(self, tenant_id: str, session_id: str) -> bool:
        """Drop a drafted session of ``tenant_id`` whose row was never committed; True if it was one."""
        state = self._sessions.get(session_id)
        if state is None or state.unsaved is None or state.session.tenant_id != tenant_id:
            return False
        del self._sessions[session_id]
        return True

    def session_state(self, tenant_id: str, session_id: object) -> SessionState:
        """The session's state if it belongs to ``tenant_id``; otherwise SESSION_NOT_FOUND."""
        if not isinstance(session_id, str):
            raise SessionNotFoundError("session not found", details={"sessionId": str(session_id)[:100]})
        state = self._sessions.get(session_id)
        if state is None:
            session = self._store.get_session(tenant_id, session_id)
            if session is None:
                raise SessionNotFoundError("session not found", details={"sessionId": session_id[:100]})
            stored = self._store.messages(session_id)
            state = SessionState(session, [ChatTurn(m.role, m.content) for m in stored],
                                 (stored[-1].position + 1) if stored else 0, session.last_activity_at)
            self.remember(state)
        if state.session.tenant_id != tenant_id:
            raise SessionNotFoundError("session not found", details={"sessionId": session_id[:100]})
        self._sessions.move_to_end(session_id)
        return state

    # ------------------------------------------------------------------ send
    async def send(self, tenant_id: str, session_id: object, content: str, *, channel: str,
                   idempotency_key: str | None, fingerprint: str, request_id: str | None = None,
                   key_id: str | None = None, sink: ReplySink | None = None,
                   context: tuple[ChatTurn, ...] = (), max_output_tokens: int | None = None) -> Reply:
        """One billed reply; ``request_id`` lets a caller (the HTTP API) reuse its own ``req_`` id.

        ``fingerprint`` (``request_fingerprint``) is only read with an idempotency key; ``key_id``
        (None: the operator's client) selects the key's own rate limit; ``sink`` streams the
        reply's text as it is written (``stream``); ``context`` is conversation the provider is
        shown before the session's own history, and not stored (``validate_context``);
        ``max_output_tokens`` bounds the reply below the agent's own bound.
        """
        if request_id is not None and not is_id(request_id, "req"):
            raise ValidationError("a request id looks like req_ followed by 20 characters",
                                  details={"field": "requestId"})
        state = self.session_state(tenant_id, session_id)
        if idempotency_key is None:
            return await self._send_once(tenant_id, state, content, channel, None, fingerprint, request_id, key_id,
                                         sink, context, max_output_tokens)
        slot = (tenant_id, idempotency_key)
        while True:
            in_flight = self._in_flight.get(slot)
            if in_flight is None:
                break
            if in_flight[0] != fingerprint:
                raise self._conflict(idempotency_key)
            try:
                return self._replayed(await asyncio.shield(in_flight[1]))
            except asyncio.CancelledError:
                if in_flight[1].cancelled():  # the first caller gave up, not us: try ourselves
                    continue
                raise
        stored = self._store.idempotency_record(tenant_id, idempotency_key)
        if stored is not None:
            if stored[0] != fingerprint:
                raise self._conflict(idempotency_key)
            return self._replayed(reply_from_record(stored[1]))
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._in_flight[slot] = (fingerprint, future)
        try:
            reply = await self._send_once(tenant_id, state, content, channel, idempotency_key, fingerprint,
                                          request_id, key_id, sink, context, max_output_tokens)
        except asyncio.CancelledError:
            future.cancel()  # waiters see the cancellation and run the request themselves
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters are optional
            raise
        else:
            future.set_result(reply)
            return reply
        finally:
            self._in_flight.pop(slot, None)

    def stream(self, tenant_id: str, session_id: object, content: str, *, channel: str,
               idempotency_key: str | None, fingerprint: str, request_id: str | None = None,
               key_id: str | None = None, context: tuple[ChatTurn, ...] = (),
               max_output_tokens: int | None = None) -> ReplyStream:
        """``send`` as a ``ReplyStream``: text as it is written, then the reply (streaming.py)."""
        def start(sink: ReplySink) -> Coroutine[Any, Any, Reply]:
            return self.send(tenant_id, session_id, content, channel=channel, idempotency_key=idempotency_key,
                             fingerprint=fingerprint, request_id=request_id, key_id=key_id, sink=sink,
                             context=context, max_output_tokens=max_output_tokens)
        return ReplyStream(start, self._keep_detached)

    async def finish_detached(self) -> None:
        """Wait for the streamed replies whose readers went away: each is stored and billed before a close."""
        while self._detached:
            await asyncio.wait(list(self._detached))

    @staticmethod
    def _conflict(key: str) -> IdempotencyConflictError:
        return IdempotencyConflictError("this idempotency key was already used with a different request",
                                        details={"idempotencyKey": key})

    @staticmethod
    def _replayed(reply: Reply) -> Reply:
        idem = Idempotency(key=reply.metadata.idempotency.key, replayed=True)
        return reply.model_copy(update={"metadata": reply.metadata.model_copy(update={"idempotency": idem})})

    async def _send_once(self, tenant_id: str, state: SessionState, content: str, channel: str,
                         key: str | None, fingerprint: str, request_id: str | None, key_id: str | None,
                         sink: ReplySink | None, context: tuple[ChatTurn, ...], max_output_tokens: int | None) -> Reply:
        providers = self._providers
        session = state.session
        agent = self._agent_for(tenant_id, session.agent_id)
        if agent is None:
            raise AgentNotFoundError("the session's agent no longer exists", details={"agentId": session.agent_id})
        received_at = self._clock.now()
        request_id = request_id or self._ids.new("req")
        chain = [(agent.primary_provider, providers[agent.primary_provider])]
        if agent.fallback_provider:
            chain.append((agent.fallback_provider, providers[agent.fallback_provider]))
        history = [*context, *state.history] if context else state.history
        chars = state.history_chars + len(content) + (turn_chars(context) if context else 0)
        request = ProviderRequest(agent.system_prompt, (*history, ChatTurn("user", content)),
                                  tuple(agent.enabled_tools), request_id,
                                  agent.max_output_tokens if max_output_tokens is None
                                  else min(agent.max_output_tokens, max_output_tokens), chars)
        # BUDGET_EXCEEDED here (None: no budget), then RATE_LIMIT_EXCEEDED: nothing called, nothing written
        stored_id = session.id if state.unsaved is None else None  # a refusal names no session that is not stored
        hold = self._budgets.reserve(tenant_id, chain, request, key_id, stored_id)
        ticket = None
        if self._limits is not None:
            try:
                ticket = self._limits.admit(tenant_id, key_id, stored_id, agent, request)
            except BaseException as exc:
                if hold is not None:
                    hold.abandon(exc)  # refused: the reservation goes back whole
                raise
        position = state.next_position
        state.next_position += 2  # reserve both slots now: concurrent sends on one session never collide
        if hold is None:
            return await self._answer(tenant_id, state, content, channel, key, fingerprint, agent, request_id,
                                      received_at, position, chain, request, None, ticket, sink)
        try:
            return await self._answer(tenant_id, state, content, channel, key, fingerprint, agent, request_id,
                                      received_at, position, chain, request, hold, ticket, sink)
        except BaseException as exc:
            hold.abandon(exc)  # the reservation goes back, or a cost whose commit failed
            raise

    async def _answer(self, tenant_id: str, state: SessionState, content: str, channel: str, key: str | None,
                      fingerprint: str, agent: Agent, request_id: str, received_at: datetime, position: int,
                      chain: list[tuple[str, Provider]], request: ProviderRequest, hold: Hold | None,
                      ticket: Ticket | None, sink: ReplySink | None) -> Reply:
        """Steps 3-5 once admitted: the provider chain, then the reply committed with its cost settled."""
        store, session = self._store, state.session
        try:
            result = await call_chain(chain, request, self._retry, self._clock, self._rng, self._breakers, sink)
        except BaseException:
            if ticket is not None:
                ticket.settle(None)
            raise
        if ticket is not None:  # the token charge becomes what the reply used (a failure: nothing)
            ticket.settle(result.response)
        events = self._event_rows(tenant_id, session, request_id, result.attempts)
        if result.response is None:
            await store.commit_async([*self._unsaved(state), *events, *result.transitions])
            state.unsaved = None
            self._metrics.attempts(result.attempts)
            streamed = sink is not None and sink.started
            if self._metrics.tracer is not None:  # OpenTelemetry spans, built from the attempt log (tracing.py)
                self._metrics.tracer.failed(tenant_id, request_id, agent.id, request, received_at, result.attempts,
                                            streamed)
            raise result.failure(request_id, streamed)
        reply = self._build_reply(result, agent.id, session.id, request_id, channel, key)
        message, usage = reply.message, reply.metadata.usage
        rows: list[JournalRow] = [  # in time order: the store converts an instant once for rows that repeat it
            MessageRow(IdFactory.derived("msg", request_id, USER_MESSAGE_INDEX), tenant_id, session.id, position,
                       "user", content, channel, request_id, received_at),
            *events,
            MessageRow(message.id, tenant_id, session.id, position + 1, "assistant", message.content, channel,
                       request_id, message.created_at),
            UsageEventRow(IdFactory.derived("evt", request_id, USAGE_EVENT_INDEX), tenant_id, session.id, agent.id,
                          message.id, request_id, reply.metadata.provider_used, channel, usage.tokens_in,
                          usage.tokens_out, usage.pricing.usd_per_1k_tokens, usage.cost_usd, message.created_at,
                          usage.pricing.usd_per_1m_input, usage.pricing.usd_per_1m_output),
            SessionActivityRow(session.id, message.created_at, session.created_at),
        ]
        if state.unsaved is not None:
            rows.insert(0, state.unsaved)
        if key is not None:
            rows.append(IdempotencyRow(tenant_id, key, fingerprint, message.id, reply_to_record(reply),
                                       message.created_at))
        if result.transitions:
            rows.extend(result.transitions)
        self._budgets.charge(tenant_id, hold, usage.cost_usd, message.created_at, rows)  # cost replaces reservation
        await store.commit_async(rows)
        state.unsaved = None
        self._metrics.reply(tenant_id, result.attempts, reply.metadata.provider_used, usage.tokens_in, usage.tokens_out,
                            usage.cost_usd)
        if self._metrics.tracer is not None:  # OpenTelemetry spans, built from the finished reply (tracing.py)
            self._metrics.tracer.reply(tenant_id, request, received_at, reply, result.attempts)
        if sink is not None and sink.first_token_s is not None:
            self._metrics.first_token(reply.metadata.provider_used, sink.first_token_s)
        state.history.extend((ChatTurn("user", content), ChatTurn("assistant", message.content)))
        state.history_chars += len(content) + len(message.content)
        state.last_activity_at = reply.message.created_at
        return reply

    @staticmethod
    def _unsaved(state: SessionState) -> list[SessionRow]:
        return [] if state.unsaved is None else [state.unsaved]

    def _event_rows(self, tenant_id: str, session: Session, request_id: str,
                    log: list[AttemptLog]) -> list[ProviderCallRow]:
        return [ProviderCallRow(IdFactory.derived("evt", request_id, index), tenant_id, session.id, session.agent_id,
                                request_id, a.provider, a.status, a.http_status, a.latency_ms, a.retries,
                                a.error_code, a.started_at)
                for index, a in enumerate(log)]

    def _build_reply(self, result: ChainResult, agent_id: str, session_id: str, request_id: str, channel: str,
                     key: str | None) -> Reply:
        """Assemble the reply from values the gateway produced itself.

        The whole tree is validated in one ``model_validate`` call: pydantic
        then builds the nested models in its compiled core, about three times
        faster than constructing each model separately in Python.
        """
        response, provider = result.response, result.provider_used
        assert response is not None and provider is not None
        fallback = result.fallback
        attempted = fallback is not None and any(a.provider == fallback for a in result.attempts)
        fallback_attempted = fallback if attempted else None
        now = self._clock.now()
        rates = self._prices.rates_at(provider, now)  # billed at the rates in effect as the reply is made
        return Reply.model_validate({
            "message": {"id": IdFactory.derived("msg", request_id, REPLY_MESSAGE_INDEX), "session_id": session_id,
                        "role": "assistant", "content": response.text, "created_at": now},
            "metadata": {
                "agent_id": agent_id,
                "provider_used": provider,
                "primary_attempted": result.primary,
                "fallback_attempted": fallback_attempted,
                "fallback_used": result.fallback_used,
                "attempts": result.attempt_dicts(),
                "usage": {"tokens_in": response.tokens_in, "tokens_out": response.tokens_out,
                          "cost_usd": rates.cost(response.tokens_in, response.tokens_out),
                          "pricing": rates.pricing},
                "idempotency": _NO_KEY if key is None else Idempotency(key=key, replayed=False),
                "request_id": request_id,
                "channel": channel,
            },
        })

"""The tenant-scoped client: everything a holder of one API key may do.

Every method is scoped by the tenant it was built for; another tenant's ids
raise exactly what an unknown id raises, so ids cannot be probed. A client
built from a key (``Gateway.connect``) checks, in every method, that the key
still works (INVALID_API_KEY once revoked or expired) and holds the method's
scope (INSUFFICIENT_SCOPE, governance/scopes.py); the operator's client
(``Gateway.as_tenant``) holds every scope.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic

from .errors import AgentNotFoundError, ValidationError
from .governance import OPERATOR_GRANT, KeyGrant, KeyHolder
from .governance.budget_admin import budget_of
from .message_input import (
    TextChannel,
    request_fingerprint,
    validate_channel,
    validate_content,
    validate_context,
    validate_idempotency_key,
    validate_max_output_tokens,
)
from .messaging import SessionState
from .models import (
    DEFAULT_EVENTS_LIMIT,
    Agent,
    AgentPatch,
    AgentSpec,
    ProviderCallEvent,
    Reply,
    Session,
    Tenant,
    Transcript,
    TranscriptMessage,
    VoiceReply,
    clean_text,
)
from .providers.base import ChatTurn
from .store.tables import SessionRow
from .voice import send_voice

if TYPE_CHECKING:
    import pandas as pd

    from . import analytics
    from .gateway import Gateway
    from .governance.budget_values import Budget
    from .streaming import ReplyStream

__all__ = ["TenantClient", "check_session_input", "parse_input", "validation_error"]


def _fingerprint(channel: str, session_id: str, content: str, context: tuple[ChatTurn, ...],
                 max_output_tokens: int | None) -> str:
    """The request for idempotency; context turns and a token bound are part of it (the same key with
    other context, or another bound, conflicts)."""
    bound = () if max_output_tokens is None else (f"max_output_tokens:{max_output_tokens}",)
    if not context:
        return request_fingerprint(channel, session_id, content, *bound)
    return request_fingerprint(channel, session_id, content, *(f"{t.role}:{t.content}" for t in context), *bound)

SpecT = TypeVar("SpecT", AgentSpec, AgentPatch)
MAX_METADATA_BYTES = 16_384
MAX_CUSTOMER_ID_CHARS = 200


def validation_error(exc: pydantic.ValidationError) -> ValidationError:
    """Translate pydantic's report into our error, one entry per bad field."""
    errors = [{"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]} for err in exc.errors()]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3])
    return ValidationError(f"invalid input ({summary})", details={"errors": errors})


def parse_input(model: type[SpecT], given: object, fields: Mapping[str, Any]) -> SpecT:
    """A validated input model from a model, a mapping (camelCase or snake_case) and/or keywords."""
    if isinstance(given, model):
        return given
    if given is not None and not isinstance(given, Mapping):
        raise ValidationError("an agent is described by an object",
                              details={"errors": [{"field": "body", "message": "expected an object"}]})
    try:
        return model.model_validate({**(given or {}), **fields})
    except pydantic.ValidationError as exc:
        raise validation_error(exc) from exc


def check_session_input(customer_id: object, metadata: object) -> str:
    """A new session's customer id checked and its metadata as canonical JSON, or VALIDATION_ERROR.

    Shared with the HTTP client, which must refuse what cannot travel as JSON exactly as this client does.
    """
    if customer_id is not None:
        if not isinstance(customer_id, str) or not 1 <= len(customer_id) <= MAX_CUSTOMER_ID_CHARS:
            raise ValidationError(f"customerId is a string of 1-{MAX_CUSTOMER_ID_CHARS} characters",
                                  details={"field": "customerId"})
        try:
            clean_text(customer_id)
        except ValueError as exc:
            raise ValidationError(str(exc), details={"field": "customerId"}) from exc
    if metadata is None:
        return "{}"
    if not isinstance(metadata, Mapping):
        raise ValidationError("metadata must be a JSON object", details={"field": "metadata"})
    try:
        text = json.dumps(dict(metadata), ensure_ascii=False, allow_nan=False, sort_keys=True)
        clean_text(text)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"metadata must be plain JSON: {exc}", details={"field": "metadata"}) from exc
    if len(text.encode("utf-8")) > MAX_METADATA_BYTES:
        raise ValidationError(f"metadata is limited to {MAX_METADATA_BYTES} bytes", details={"field": "metadata"})
    return text


class TenantClient(KeyHolder):
    """Agents, sessions and messages of one tenant."""

    def __init__(self, gateway: Gateway, tenant: Tenant, grant: KeyGrant = OPERATOR_GRANT) -> None:
        self._gw = gateway
        self.tenant = tenant
        self._grant = grant

    def __repr__(self) -> str:
        return f"TenantClient({self.tenant.name!r}, {self.tenant.id})"

    def require(self, scope: str | None) -> None:
        """Refuse a key that no longer works (INVALID_API_KEY) or lacks ``scope`` (INSUFFICIENT_SCOPE).

        Every method calls it first; the HTTP API calls it before it reads a request's body.
        """
        self._gw.keys.require(self._grant, scope)

    # ------------------------------------------------------------------ agents
    def _check_providers(self, primary: str, fallback: str | None) -> None:
        known = sorted(self._gw.providers)
        for field, value in (("primaryProvider", primary), ("fallbackProvider", fallback)):
            if value is not None and value not in self._gw.providers:
                raise ValidationError(f"unknown provider {value[:64]!r}; known: {', '.join(known)}",
                                      details={"errors": [{"field": field, "message": "unknown provider"}]})
        if fallback is not None and fallback == primary:
            raise ValidationError("the fallback provider must differ from the primary",
                                  details={"errors": [{"field": "fallbackProvider", "message": "same as primary"}]})

    def create_agent(self, spec: AgentSpec | Mapping[str, Any] | None = None, **fields: Any) -> Agent:
        """Create an agent from an ``AgentSpec``, a (camelCase or snake_case) mapping, or keywords."""
        self.require("agents:write")
        parsed = parse_input(AgentSpec, spec, fields)
        self._check_providers(parsed.primary_provider, parsed.fallback_provider)
        now = self._gw.clock.now()
        agent = Agent(id=self._gw.ids.new("agt"), tenant_id=self.id, created_at=now, updated_at=now,
                      **parsed.model_dump())
        self._gw.store.insert_agent(agent)
        self._gw.remember_agent(agent)
        return agent

    def update_agent(self, agent_id: str, patch: AgentPatch | Mapping[str, Any] | None = None, **fields: Any) -> Agent:
        """Change only the fields given; ``fallback_provider=None`` (or "none") removes the fallback."""
        self.require("agents:write")
        current = self._agent(agent_id)
        parsed = parse_input(AgentPatch, patch, fields)
        given = parsed.model_dump(exclude_unset=True)
        nulled = sorted(k for k, v in given.items() if v is None and k != "fallback_provider")
        if nulled:  # only the fallback can be removed; the other fields are required
            raise ValidationError(f"{', '.join(nulled)} cannot be removed",
                                  details={"errors": [{"field": k, "message": "must not be null"} for k in nulled]})
        merged = current.model_copy(update={**given, "updated_at": self._gw.clock.now()})
        self._check_providers(merged.primary_provider, merged.fallback_provider)
        self._gw.store.update_agent(merged)
        self._gw.remember_agent(merged)
        return merged

    def get_agent(self, agent_id: str) -> Agent:
        self.require("agents:read")
        return self._agent(agent_id)

    def _agent(self, agent_id: str) -> Agent:
        agent = self._gw.agent_for(self.id, agent_id) if isinstance(agent_id, str) else None
        if agent is None:
            raise AgentNotFoundError("agent not found", details={"agentId": str(agent_id)[:100]})
        return agent

    def list_agents(self) -> list[Agent]:
        self.require("agents:read")
        return self._gw.store.list_agents(self.id)

    # ------------------------------------------------------------------ sessions
    def create_session(self, agent_id: str, customer_id: str | None = None,
                       metadata: Mapping[str, Any] | None = None) -> Session:
        """Open a conversation of one customer with one agent (durable when it returns)."""
        session, row = self._new_session(agent_id, customer_id, metadata)
        self._gw.store.commit([row])
        self._gw.sender.remember(SessionState(session, [], 0, session.created_at))
        return session

    async def create_session_async(self, agent_id: str, customer_id: str | None = None,
                                   metadata: Mapping[str, Any] | None = None) -> Session:
        """``create_session`` whose commit is grouped with concurrent ones (for heavy traffic)."""
        session, row = self._new_session(agent_id, customer_id, metadata)
        await self._gw.store.commit_async([row])
        self._gw.sender.remember(SessionState(session, [], 0, session.created_at))
        return session

    def draft_session(self, agent_id: str, customer_id: str | None = None,
                      metadata: Mapping[str, Any] | None = None) -> Session:
        """A session stored with the first record sent in it (its reply, or the attempt log of a failed one).

        A send refused before any provider is called (a budget, a rate limit)
        then leaves nothing behind: the OpenAI-compatible front door opens a
        session per request that names none. Until then only this process
        knows it; ``forget_draft`` drops it.
        """
        session, row = self._new_session(agent_id, customer_id, metadata)
        self._gw.sender.remember(SessionState(session, [], 0, session.created_at, unsaved=row))
        return session

    def forget_draft(self, session_id: str) -> bool:
        """Drop a drafted session nothing was stored for; True if it was one (a stored session is kept)."""
        self.require("chat")
        return self._gw.sender.forget_unsaved(self.id, session_id)

    def _new_session(self, agent_id: str, customer_id: str | None,
                     metadata: Mapping[str, Any] | None) -> tuple[Session, SessionRow]:
        self.require("chat")
        agent = self._agent(agent_id)
        metadata_json = check_session_input(customer_id, metadata)
        now = self._gw.clock.now()
        session = Session(id=self._gw.ids.new("ses"), tenant_id=self.id, agent_id=agent.id, customer_id=customer_id,
                          status="active", metadata=json.loads(metadata_json), created_at=now, last_activity_at=now)
        return session, SessionRow(session.id, self.id, agent.id, customer_id, "active", metadata_json, now, now)

    def get_session(self, session_id: str) -> Session:
        self.require("sessions:read")
        return self._session(session_id)

    def _session(self, session_id: str) -> Session:
        state = self._gw.sender.session_state(self.id, session_id)
        if state.last_activity_at and state.last_activity_at != state.session.last_activity_at:
            return state.session.model_copy(update={"last_activity_at": state.last_activity_at})
        return state.session

    def transcript(self, session_id: str) -> Transcript:
        """The session, its messages oldest first, and every provider call made for it."""
        self.require("sessions:read")
        session = self._session(session_id)
        messages = [TranscriptMessage(id=m.id, role=m.role, content=m.content, created_at=m.created_at)
                    for m in self._gw.store.messages(session.id)]
        events = [ProviderCallEvent(id=c.id, provider=c.provider, status=c.status, latency_ms=c.latency_ms,
                                    created_at=c.created_at)
                  for c in self._gw.store.provider_calls(session.id)]
        return Transcript(session=session, messages=messages, events=events)

    # ------------------------------------------------------------------ usage
    def budget(self) -> Budget | None:
        """This tenant's monthly budget as it stands (spent, reserved, remaining, alerts); None without one.

        No scope needed: any valid key sees its tenant's budget, as in ``GET /v1/me``.
        """
        return budget_of(self._gw, self.id)

    def usage_rollup(self, start: object, end: object) -> analytics.Rollup:
        """Totals, per provider and top agents for UTC days ``start``..``end`` (inclusive)."""
        self.require("usage:read")
        from . import analytics  # pandas, loaded on first use: a gateway that only serves replies never needs it

        return analytics.rollup(self._gw, self.id, start, end)

    def usage_events(self, start: object, end: object, *, limit: object = DEFAULT_EVENTS_LIMIT,
                     offset: object = 0) -> pd.DataFrame:
        """Usage events of the period, newest first."""
        self.require("usage:read")
        from . import analytics

        return analytics.events(self._gw, self.id, start, end, limit=limit, offset=offset)

    def usage_forecast(self, month: str | None = None) -> analytics.SpendForecast:
        """This month's (or ``month``'s, ``YYYY-MM``) spend so far and at this pace by its end, 80% interval."""
        self.require("usage:read")
        from . import analytics

        return analytics.month_end_forecast(self._gw, self.id, month=month)

    def usage_monthly(self, months: int = 12) -> pd.DataFrame:
        """Cost per provider per calendar month, the last ``months`` including the current, zeros included."""
        self.require("usage:read")
        from . import analytics

        return analytics.monthly(self._gw, self.id, months=months)

    # ------------------------------------------------------------------ messages
    async def send_message(self, session_id: str, content: str, *, idempotency_key: str | None = None,
                           request_id: str | None = None, channel: TextChannel = "chat",
                           context: Sequence[ChatTurn] | None = None, max_output_tokens: int | None = None) -> Reply:
        """Send a user message; returns the assistant's reply, billed exactly once.

        ``request_id`` (a ``req_`` id, e.g. the HTTP request's) names the request in
        the reply, the attempt log and the usage event; by default one is made.
        ``channel`` is where the message came in: ``chat`` (the /v1 contract) or
        ``openai`` (the OpenAI-compatible front door); it is part of the request for
        idempotency, so one key cannot name a message on both doors. ``context``: earlier turns the
        caller keeps itself, shown to the provider before the session's history and not stored
        (``message_input.validate_context``). ``max_output_tokens`` bounds this reply below the
        agent's own bound (the lower of the two applies).
        """
        content, channel, key, fingerprint, turns, bound = self._checked_send(
            session_id, content, idempotency_key, channel, context, max_output_tokens)
        return await self._gw.sender.send(self.id, session_id, content, channel=channel, idempotency_key=key,
                                          fingerprint=fingerprint, request_id=request_id, key_id=self._grant.key_id,
                                          context=turns, max_output_tokens=bound)

    def stream_message(self, session_id: str, content: str, *, idempotency_key: str | None = None,
                       request_id: str | None = None, channel: TextChannel = "chat",
                       context: Sequence[ChatTurn] | None = None, max_output_tokens: int | None = None
                       ) -> ReplyStream:
        """``send_message`` as it is written: ``async for item in ...`` gives ``TextDelta`` items, then the ``Reply``.

        Billed exactly once whatever the caller does: a caller that stops
        iterating (a client that disconnected) leaves the reply to be finished,
        stored and billed; the same idempotency key then replays it. Errors
        before the first delta are the ones ``send_message`` raises; a provider
        failing after it raises STREAM_INTERRUPTED (nothing billed).
        """
        content, channel, key, fingerprint, turns, bound = self._checked_send(
            session_id, content, idempotency_key, channel, context, max_output_tokens)
        return self._gw.sender.stream(self.id, session_id, content, channel=channel, idempotency_key=key,
                                      fingerprint=fingerprint, request_id=request_id, key_id=self._grant.key_id,
                                      context=turns, max_output_tokens=bound)

    def _checked_send(self, session_id: str, content: str, idempotency_key: str | None, channel: object,
                      context: Sequence[ChatTurn] | None, max_output_tokens: int | None
                      ) -> tuple[str, TextChannel, str | None, str, tuple[ChatTurn, ...], int | None]:
        """A send's arguments checked at the door (scope, then each value): content, channel, key,
        fingerprint, context turns, token bound (a tuple, not a dict: this runs for every reply)."""
        self.require("chat")
        content = validate_content(content)
        key = validate_idempotency_key(idempotency_key)
        channel = validate_channel(channel)
        turns = validate_context(context)
        bound = validate_max_output_tokens(max_output_tokens)
        fingerprint = _fingerprint(channel, session_id, content, turns, bound) if key is not None else ""
        return content, channel, key, fingerprint, turns, bound

    async def send_voice(self, session_id: str, audio: bytes, audio_duration_ms: int | None = None, *,
                         idempotency_key: str | None = None, request_id: str | None = None) -> VoiceReply:
        """Send recorded speech; returns what was heard, the reply, and the reply as WAV."""
        self.require("chat")
        return await send_voice(self._gw, self.id, session_id, audio, audio_duration_ms, idempotency_key, request_id,
                                key_id=self._grant.key_id)

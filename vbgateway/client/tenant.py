"""``HttpTenantClient``: the embedded ``TenantClient``'s methods, answered by a gateway over HTTP.

Several notebooks, scripts and dashboards can share one database only through
one gateway process; each of them talks to it with this client. It has the
same methods, arguments, return types and exceptions as ``TenantClient``, so
code (the widgets included) runs unchanged on either.

Arguments the wire cannot carry as the embedded client takes them (a bytes
object as metadata, a tab in an idempotency key, ``None`` as an id) are
checked here with the embedded client's own checks, in its order, so they
fail with the same error; everything else is decided by the server, which
runs the same core. Every message and voice send carries an idempotency key
(a fresh one when the caller gives none), so the client may repeat a send
whose answer was lost without the reply being billed twice.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from ..errors import AgentNotFoundError, InsufficientScopeError, SessionNotFoundError, ValidationError
from ..governance.keys import KeyGrant, KeyHolder
from ..governance.scopes import ALL_SCOPES
from ..ids import is_id
from ..message_input import validate_content, validate_idempotency_key
from ..models import (
    DEFAULT_EVENTS_LIMIT,
    MAX_EVENTS_LIMIT,
    Agent,
    AgentPatch,
    AgentSpec,
    Idempotency,
    Reply,
    Session,
    Tenant,
    Transcript,
    VoiceReply,
)
from ..providers.wire import TextDelta
from ..tenant import check_session_input, parse_input
from ..voice import MAX_AUDIO_DURATION_MS, audio_bytes
from . import wire
from .envelope import error_from_answer, error_from_event
from .transport import Request, Transport, json_request

if TYPE_CHECKING:
    import pandas as pd

    from ..analytics import Rollup, SpendForecast
    from ..governance.budget_values import Budget

__all__ = ["MAX_ID_CHARS", "HttpTenantClient"]

MAX_ID_CHARS = 100  # longer ids name nothing (the core's own are 24 characters)
_MONTHS = (1, 120)


def _segment(value: object) -> str | None:
    """``value`` as one URL path segment, or None when no id of the gateway could look like it."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS or "/" in value:
        return None
    return quote(value, safe="").replace(".", "%2E")  # "." and ".." would be read as path steps


def _agent_not_found(agent_id: object) -> AgentNotFoundError:
    return AgentNotFoundError("agent not found", details={"agentId": str(agent_id)[:100]})


def _session_not_found(session_id: object) -> SessionNotFoundError:
    return SessionNotFoundError("session not found", details={"sessionId": str(session_id)[:100]})


def _whole(value: object, field: str, low: int, high: int | None, message: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        raise ValidationError(message, details={"field": field})
    return value


class HttpTenantClient(KeyHolder):
    """Agents, sessions and messages of one tenant, through a gateway's /v1 API."""

    def __init__(self, transport: Transport, tenant: Tenant, grant: KeyGrant | None = None) -> None:
        self._http = transport
        self.tenant = tenant
        self._grant = grant or KeyGrant(None, ALL_SCOPES)

    def __repr__(self) -> str:
        return f"HttpTenantClient({self.tenant.name!r}, {self.tenant.id}, {self._http.base_url})"

    @property
    def base_url(self) -> str:
        return self._http.base_url

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Close the connections of the synchronous methods."""
        self._http.close()

    async def aclose(self) -> None:
        """Close the connections of the coroutines on the running event loop."""
        await self._http.aclose()

    def __enter__(self) -> HttpTenantClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> HttpTenantClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
        self.close()

    # ------------------------------------------------------------------ agents
    def create_agent(self, spec: AgentSpec | Mapping[str, Any] | None = None, **fields: Any) -> Agent:
        """Create an agent from an ``AgentSpec``, a (camelCase or snake_case) mapping, or keywords."""
        parsed = parse_input(AgentSpec, spec, fields)
        body = parsed.model_dump(by_alias=True, mode="json")
        answer = self._http.call(json_request("POST", "/v1/agents", body), replay_safe=False)
        return wire.agent(answer["agent"], self.id)

    def update_agent(self, agent_id: str, patch: AgentPatch | Mapping[str, Any] | None = None, **fields: Any) -> Agent:
        """Change only the fields given; ``fallback_provider=None`` (or "none") removes the fallback."""
        segment = _segment(agent_id)
        if segment is None:
            raise _agent_not_found(agent_id)
        try:
            parsed = parse_input(AgentPatch, patch, fields)
        except ValidationError:
            self._probe_agent(agent_id)  # an unknown agent is refused first, as the embedded client does
            raise
        body = parsed.model_dump(by_alias=True, mode="json", exclude_unset=True)
        answer = self._http.call(json_request("PUT", f"/v1/agents/{segment}", body), replay_safe=True)
        return wire.agent(answer["agent"], self.id)

    def get_agent(self, agent_id: str) -> Agent:
        segment = _segment(agent_id)
        if segment is None:
            raise _agent_not_found(agent_id)
        return wire.agent(self._get(f"/v1/agents/{segment}")["agent"], self.id)

    def _probe_agent(self, agent_id: str) -> None:
        """AGENT_NOT_FOUND for an unknown agent; nothing when the key may not read agents (the caller's error stands)."""
        with contextlib.suppress(InsufficientScopeError):
            self.get_agent(agent_id)

    def list_agents(self) -> list[Agent]:
        """The tenant's agents, oldest first (the API lists them newest first)."""
        return [wire.agent(a, self.id) for a in reversed(self._get("/v1/agents")["agents"])]

    # ------------------------------------------------------------------ sessions
    def create_session(self, agent_id: str, customer_id: str | None = None,
                       metadata: Mapping[str, Any] | None = None) -> Session:
        """Open a conversation of one customer with one agent (durable when it returns)."""
        answer = self._http.call(self._session_request(agent_id, customer_id, metadata), replay_safe=False)
        return wire.session(answer["session"], self.id)

    async def create_session_async(self, agent_id: str, customer_id: str | None = None,
                                   metadata: Mapping[str, Any] | None = None) -> Session:
        """``create_session`` as a coroutine (the server groups the commits of concurrent ones)."""
        request = self._session_request(agent_id, customer_id, metadata)
        answer = await self._http.acall(request, replay_safe=False)
        return wire.session(answer["session"], self.id)

    def _session_request(self, agent_id: str, customer_id: str | None, metadata: Mapping[str, Any] | None) -> Request:
        if _segment(agent_id) is None:
            raise _agent_not_found(agent_id)
        try:
            metadata_json = check_session_input(customer_id, metadata)
        except ValidationError:
            self._probe_agent(agent_id)  # an unknown agent is refused first, as the embedded client does
            raise
        body = {"agentId": agent_id, "customerId": customer_id, "metadata": orjson.loads(metadata_json)}
        return json_request("POST", "/v1/sessions", body)

    def get_session(self, session_id: str) -> Session:
        segment = _segment(session_id)
        if segment is None:
            raise _session_not_found(session_id)
        return wire.session(self._get(f"/v1/sessions/{segment}")["session"], self.id)

    def transcript(self, session_id: str) -> Transcript:
        """The session, its messages oldest first, and every provider call made for it."""
        segment = _segment(session_id)
        if segment is None:
            raise _session_not_found(session_id)
        return wire.transcript(self._get(f"/v1/sessions/{segment}/transcript"), self.id)

    # ------------------------------------------------------------------ usage
    def budget(self) -> Budget | None:
        """This tenant's monthly budget as it stands (spent, reserved, remaining, alerts); None without one."""
        return wire.budget(self._get("/v1/me").get("budget"))

    def usage_rollup(self, start: object, end: object) -> Rollup:
        """Totals, per provider and top agents for UTC days ``start``..``end`` (inclusive)."""
        return wire.rollup(self._get("/v1/usage/rollup", self._days(start, end)))

    def usage_events(self, start: object, end: object, *, limit: object = DEFAULT_EVENTS_LIMIT,
                     offset: object = 0) -> pd.DataFrame:
        """Usage events of the period, newest first."""
        days = self._days(start, end)
        page = _whole(limit, "limit", 1, MAX_EVENTS_LIMIT, f"limit is a whole number from 1 to {MAX_EVENTS_LIMIT}")
        skip = _whole(offset, "offset", 0, None, "offset is a whole number >= 0")
        return wire.events_frame(self._get("/v1/usage/events", {**days, "limit": page, "offset": skip}), self.id)

    def usage_forecast(self, month: str | None = None) -> SpendForecast:
        """This month's (or ``month``'s, ``YYYY-MM``) spend so far and at this pace by its end, 80% interval."""
        params = {"forecast": "true"}
        if month is not None:
            from ..analytics import month_range

            params.update(self._days(*month_range(month)))
        return wire.forecast(self._get("/v1/usage/rollup", params)["forecast"], self.id)

    def usage_monthly(self, months: int = 12) -> pd.DataFrame:
        """Cost per provider per calendar month, the last ``months`` including the current, zeros included."""
        count = _whole(months, "months", *_MONTHS, f"months is a whole number from {_MONTHS[0]} to {_MONTHS[1]}")
        return wire.monthly_frame(self._get("/v1/usage/monthly", {"months": count}))

    @staticmethod
    def _days(start: object, end: object) -> dict[str, str]:
        from ..analytics import parse_day

        return {"from": parse_day(start, "from").isoformat(), "to": parse_day(end, "to").isoformat()}

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self._http.call(json_request("GET", path, params=params), replay_safe=True)

    # ------------------------------------------------------------------ messages
    async def send_message(self, session_id: str, content: str, *, idempotency_key: str | None = None,
                           request_id: str | None = None) -> Reply:
        """Send a user message; returns the assistant's reply, billed exactly once.

        Without ``idempotency_key`` the client makes one for this call (the
        reply then says ``key=None``, as the embedded client's does).
        """
        content = validate_content(content)
        key = validate_idempotency_key(idempotency_key)
        headers = self._send_headers(key, request_id)
        segment = _segment(session_id)
        if segment is None:
            raise _session_not_found(session_id)
        request = json_request("POST", f"/v1/sessions/{segment}/messages", {"role": "user", "content": content},
                               headers=headers)
        return self._as_asked(wire.reply(await self._http.acall(request, replay_safe=True)), key)

    async def stream_message(self, session_id: str, content: str, *, idempotency_key: str | None = None,
                             request_id: str | None = None) -> AsyncIterator[TextDelta | Reply]:
        """``send_message`` as it is written: ``TextDelta`` items, then the ``Reply`` (Server-Sent Events).

        Leaving the loop early (or losing the connection) does not lose the
        reply: the gateway finishes, stores and bills it once, and the same
        idempotency key replays it (pass one to be able to ask again).
        """
        content = validate_content(content)
        key = validate_idempotency_key(idempotency_key)
        segment = _segment(session_id)
        if segment is None:
            raise _session_not_found(session_id)
        request = json_request("POST", f"/v1/sessions/{segment}/messages", {"role": "user", "content": content},
                               headers=self._send_headers(key, request_id))
        events = self._http.aevents(request)
        try:
            async for event, data in events:
                if event == "delta":
                    yield TextDelta(data["text"])
                elif event == "done":
                    yield self._as_asked(wire.reply(data), key)
                    return
                elif event == "error":
                    raise error_from_event(data)
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        raise error_from_answer(502, None, None)  # the stream ended without its reply

    async def send_voice(self, session_id: str, audio: bytes, audio_duration_ms: int | None = None, *,
                         idempotency_key: str | None = None, request_id: str | None = None) -> VoiceReply:
        """Send recorded speech; returns what was heard, the reply, and the reply as WAV."""
        data = audio_bytes(audio)
        if audio_duration_ms is not None:  # a form field is text: "1000" must not pass for 1000 here either
            _whole(audio_duration_ms, "audioDurationMs", 1, MAX_AUDIO_DURATION_MS,
                   f"audioDurationMs is a whole number of milliseconds, 1 to {MAX_AUDIO_DURATION_MS}")
        key = validate_idempotency_key(idempotency_key)
        headers = self._send_headers(key, request_id)
        segment = _segment(session_id)
        if segment is None:
            raise _session_not_found(session_id)
        form = {} if audio_duration_ms is None else {"audioDurationMs": str(audio_duration_ms)}
        request: Request = {"method": "POST", "url": f"/v1/sessions/{segment}/voice", "headers": headers,
                            "files": {"audio": ("audio", data, "application/octet-stream")}, "data": form}
        voice = wire.voice_reply(await self._http.acall(request, replay_safe=True))
        return voice.model_copy(update={"reply": self._as_asked(voice.reply, key)})

    @staticmethod
    def _send_headers(key: str | None, request_id: str | None) -> dict[str, str | bytes]:
        if request_id is not None and not is_id(request_id, "req"):
            raise ValidationError("a request id looks like req_ followed by 20 characters",
                                  details={"field": "requestId"})
        headers: dict[str, str | bytes] = {
            "Idempotency-Key": (key or secrets.token_urlsafe(18)).encode("utf-8")}  # the server reads UTF-8
        if request_id is not None:
            headers["X-Request-Id"] = request_id
        return headers

    @staticmethod
    def _as_asked(reply: Reply, key: str | None) -> Reply:
        """The reply as the embedded client gives it: a key of the client's own is not the caller's business."""
        if key is None:
            idempotency = Idempotency(key=None, replayed=False)
        elif reply.metadata.idempotency.key != key:
            idempotency = Idempotency(key=key, replayed=reply.metadata.idempotency.replayed)
        else:
            return reply
        return reply.model_copy(update={"metadata": reply.metadata.model_copy(update={"idempotency": idempotency})})

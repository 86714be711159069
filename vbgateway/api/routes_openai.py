"""The OpenAI-compatible front door: ``POST /v1/chat/completions``, ``GET /v1/models``.

An app on the official ``openai`` SDK points ``base_url`` at
``http://HOST:PORT/v1`` and keeps its code. ``model`` names an agent (its id
or ``agent:<name>``), so the agent's system prompt, providers, retries,
fallback, budget and rate limits apply: the request goes through
``TenantClient.send_message`` / ``stream_message`` with channel ``openai``,
billed and logged like any reply.

Conversations live in sessions. ``X-Session-Id`` names a session of the
agent whose stored history is the conversation (earlier messages of the
request are then not used); without it a new session is opened (``user`` as
its customer id) and only the last message is sent: the session, not the
request, is the record a later turn builds on. Every answer names the
session in ``X-Session-Id``. A new session is stored with the first record
sent in it (``TenantClient.draft_session``): a request refused before any
provider was called (a budget, a rate limit) leaves no session behind and
names none. An ``Idempotency-Key`` without a session is tied to the session
its first request opened (``_KeyedSessions``), so a retry replays the reply
instead of opening another session.

The routes authenticate with ``Authorization: Bearer <key>`` (what the SDK
sends) or ``X-API-Key``, and every error leaves in OpenAI's shape
(openai_wire.py), which the SDK turns into its exception classes.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from ..errors import GatewayError, IdempotencyConflictError, ValidationError
from ..gateway import Gateway
from ..governance.scopes import scope_for_route
from ..message_input import reply_from_record, validate_content, validate_idempotency_key
from ..models import Agent, Reply
from ..streaming import TextDelta
from ..tenant import TenantClient
from .envelope import CIRCUIT_RETRY_AFTER, RETRY_AFTER_HEADER, json_response, request_id_of
from .messages import idempotency_key_text
from .openai_models import AgentNames
from .openai_wire import (
    ChatCompletion,
    ChatCompletionRequest,
    ModelList,
    ModelObject,
    OpenAIErrorResponse,
    chunk,
    completion,
    done_event,
    earlier_turns,
    finish_reason,
    gateway_metadata,
    last_user_text,
    model_object,
    openai_error,
    openai_error_response,
    usage,
)
from .routing import current_tenant
from .sse import EventStream, ReplyItems, open_reply_stream

__all__ = ["COMPLETIONS_PATH", "KEYED_SESSIONS", "build_router", "complete_document", "openai_route_class"]

COMPLETIONS_PATH = "/v1/chat/completions"
KEYED_SESSIONS = 10_000  # idempotency keys whose opened session is remembered in memory (the store has the rest)
_log = logging.getLogger("vbgateway.api.errors")

SessionHeader = Annotated[str | None, Header(
    alias="X-Session-Id", description="Continue this session of the agent (its stored history is the "
                                      "conversation); without it a new session is opened.")]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key",
    description="Repeat a request with the same key to replay its first answer; nothing is billed twice.")]


def api_key_of(headers: Headers) -> str:
    """The key of ``Authorization: Bearer <key>`` (the OpenAI SDK's way) and/or ``X-API-Key``.

    Every credential given must hold: an Authorization header of another
    scheme, or two headers naming different keys, give no key (401), so
    that a wrong credential is never hidden by a right one.
    """
    key = headers.get("x-api-key")
    authorization = headers.get("authorization")
    if authorization is None:
        return key or ""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or (key is not None and key != token):
        return ""
    return token


def _param(loc: Sequence[object]) -> str:
    """A validation error's place as OpenAI names params (``messages[0].content``): list indexes in
    brackets, and the union member pydantic tried (``str``, ``constrained-str``, ``list[...]``) left out."""
    param = ""
    for part in loc:
        if isinstance(part, int):
            param += f"[{part}]"
        elif isinstance(part, str) and not (part in _UNION_TAGS or "[" in part or part.startswith("function-")):
            param += f".{part}" if param else part
    return param


_UNION_TAGS = frozenset({"str", "constrained-str", "int", "float", "bool", "none", "list", "dict"})


def _gateway_error(exc: Exception) -> GatewayError | None:
    """FastAPI's and Starlette's refusals as gateway errors (the body's validation, an unreadable body)."""
    if isinstance(exc, RequestValidationError):
        errors = [{"field": _param(e.get("loc", ())[1:]) or "body",
                   "message": str(e.get("msg", "invalid"))} for e in exc.errors()]
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return ValidationError("the request body is not valid JSON", details={"field": "body"})
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3])
        return ValidationError(f"invalid request ({summary})", details={"errors": errors[:50]})
    if isinstance(exc, HTTPException):
        if isinstance(exc.__cause__, GatewayError):
            return exc.__cause__
        return ValidationError(exc.detail if isinstance(exc.detail, str) else "the request could not be read")
    return None


def openai_route_class(gateway: Gateway) -> type[APIRoute]:
    """Routes that authenticate by Bearer or X-API-Key and answer every error in OpenAI's shape."""

    class OpenAIRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()
            scope = scope_for_route(self.methods, self.path)

            async def authenticated(request: Request) -> Response:
                request_id = request_id_of(request)
                try:
                    tenant = request.state.tenant = gateway.connect(api_key_of(request.headers))
                    tenant.require(scope)
                    return await handler(request)
                except GatewayError as exc:
                    return openai_error_response(request_id, exc)
                except ClientDisconnect:
                    return openai_error_response(request_id, ValidationError("the connection closed early"))
                except Exception as exc:
                    translated = _gateway_error(exc)
                    if translated is not None:
                        return openai_error_response(request_id, translated)
                    _log.error("unhandled error on request %s", request_id, exc_info=exc)
                    return openai_error_response(request_id, GatewayError("internal error"))

            return authenticated

    return OpenAIRoute


class _KeyedSessions:
    """Which session an idempotency key's request opened, so a retry without ``X-Session-Id`` finds it.

    In memory while recent (also for a request still running: a concurrent
    duplicate waits for the session), else from the key's stored reply.
    """

    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway
        self._opened: OrderedDict[tuple[str, str], asyncio.Future[str]] = OrderedDict()

    async def session_for(self, tenant: TenantClient, key: str, open_session: Callable[[], Coroutine[Any, Any, str]]
                          ) -> str:
        slot = (tenant.id, key)
        known = self._opened.get(slot)
        if known is not None:
            self._opened.move_to_end(slot)
            return await asyncio.shield(known)
        stored = self._gw.store.idempotency_record(tenant.id, key)
        if stored is not None:
            return reply_from_record(stored[1]).message.session_id
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._opened[slot] = future
        while len(self._opened) > KEYED_SESSIONS:
            self._opened.popitem(last=False)
        try:
            session_id = await open_session()
        except BaseException as exc:
            self._opened.pop(slot, None)
            future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            future.exception()  # waiters are optional
            raise
        future.set_result(session_id)
        return session_id

    def forget(self, tenant_id: str, key: str | None) -> None:
        """The session a key's request drafted was dropped (refused before anything was stored)."""
        if key is not None:
            self._opened.pop((tenant_id, key), None)


async def _session(gateway: Gateway, keyed: _KeyedSessions, tenant: TenantClient, agent: Agent, model: str,
                   session_header: str | None, key: str | None, user: str | None) -> str:
    """The session the request continues (``X-Session-Id``), or the one it opens (or its key opened)."""
    if session_header is not None:
        state = gateway.sender.session_state(tenant.id, session_header)  # SESSION_NOT_FOUND
        if state.session.agent_id != agent.id:
            raise ValidationError(f"session {session_header[:100]} belongs to another agent than {model[:100]!r}",
                                  details={"field": "X-Session-Id", "openaiCode": "session_agent_mismatch",
                                           "sessionAgentId": state.session.agent_id})
        return session_header

    async def open_session() -> str:
        try:
            return tenant.draft_session(agent.id, user, {"channel": "openai", "model": model}).id
        except ValidationError as exc:
            raise ValidationError(exc.message.replace("customerId", "user"), details={"field": "user"}) from exc

    if key is None:
        return await open_session()
    session_id = await keyed.session_for(tenant, key, open_session)
    owner = gateway.sender.session_state(tenant.id, session_id).session.agent_id
    if owner != agent.id:
        raise IdempotencyConflictError("this idempotency key was already used with a different request",
                                       details={"idempotencyKey": key, "field": "Idempotency-Key"})
    return session_id


async def _completion_events(first: TextDelta | Reply, items: ReplyItems, completion_id: str, created: int,
                             model: str, include_usage: bool, request_id: str, bound: int) -> AsyncIterator[bytes]:
    """``chat.completion.chunk`` events: the role, each piece of text, the finish, the usage, ``[DONE]``.

    An error after the first text (STREAM_INTERRUPTED) is an ``error`` event,
    which the SDK raises as ``APIError``; there is no ``[DONE]`` after it.
    """
    yield chunk(completion_id, created, model, {"role": "assistant", "content": ""}, with_usage=include_usage)
    item = first
    try:
        while not isinstance(item, Reply):
            yield chunk(completion_id, created, model, {"content": item.text}, with_usage=include_usage)
            item = await anext(items)
    except Exception as exc:  # an unexpected failure is an internal error (logged), never a silent cut
        yield b"data: " + orjson.dumps(openai_error(request_id, exc)[1], default=str) + b"\n\n"
        return
    yield chunk(completion_id, created, model, {}, finish_reason(item, bound), with_usage=include_usage,
                extra={"vbgateway": gateway_metadata(item)})
    if include_usage:
        yield chunk(completion_id, created, model, None, extra={"usage": usage(item)})
    yield done_event()


_Responses = dict[int | str, dict[str, Any]]
_ERRORS: _Responses = {status: {"model": OpenAIErrorResponse, "description": meaning} for status, meaning in {
    400: "invalid_request_error: a malformed or unsupported request (param names the field)",
    401: "invalid_api_key: missing, unknown, revoked or expired key (Bearer or X-API-Key)",
    404: "model_not_found (also another tenant's agents), session_not_found",
    413: "payload_too_large: a body over 1 MB",
    500: "internal_error"}.items()}
_SEND_ERRORS: _Responses = {status: {"model": OpenAIErrorResponse, "description": meaning} for status, meaning in {
    402: "budget_exceeded: the most this reply can cost does not fit in the tenant's monthly budget",
    409: "idempotency_conflict: the key was used with a different request",
    502: "all_providers_failed: every provider failed (details.attempts lists every try)",
    503: "all_providers_failed: every provider's circuit breaker is open"}.items()}


_STREAMED = ("A chat.completion; with stream true, text/event-stream of `data: {chat.completion.chunk}` events "
             "ending in `data: [DONE]` (or a `data: {\"error\": ...}` event if the provider fails mid-way)")
_SESSION_HEADER = {"description": "The session this conversation is kept in: send it back to continue.",
                   "required": True, "schema": {"type": "string", "pattern": "^ses_[0-9a-z]{20}$"}}
_BEARER = {"type": "http", "scheme": "bearer", "description": "The tenant's key (sk_...) as a bearer token, "
                                                             "as the OpenAI SDKs send it."}
_ERROR = {"$ref": "#/components/schemas/OpenAIErrorResponse"}
_EITHER_ERROR = {"anyOf": [_ERROR, {"$ref": "#/components/schemas/ErrorResponse"}]}


def complete_document(document: dict[str, Any]) -> None:
    """What FastAPI cannot see: Bearer or X-API-Key, the stream, OpenAI-shaped 403/429, and refusals
    made before the route (a body over the limit, a bad X-Correlation-Id) in the /v1 envelope."""
    document["components"]["securitySchemes"]["BearerAuth"] = _BEARER
    for path, item in document.get("paths", {}).items():
        if path != COMPLETIONS_PATH and not path.startswith("/v1/models"):
            continue
        for operation in item.values():
            operation["security"] = [{"BearerAuth": []}, {"APIKeyHeader": []}]
            responses = operation["responses"]
            responses["403"]["content"] = {"application/json": {"schema": dict(_ERROR)}}
            for status in ("400", "413"):
                responses[status]["content"] = {"application/json": {"schema": copy.deepcopy(_EITHER_ERROR)}}
            if path == COMPLETIONS_PATH:
                responses["200"]["content"]["text/event-stream"] = {"schema": {"type": "string"}}
                for status, response in responses.items():
                    if status not in ("401", "413"):  # an error before the session is known has none
                        header = {**_SESSION_HEADER, "required": status == "200"}
                        response.setdefault("headers", {})["X-Session-Id"] = header
                responses["503"]["headers"]["Retry-After"] = copy.deepcopy(CIRCUIT_RETRY_AFTER)
                responses["429"] = {"description": "rate_limit_exceeded: Retry-After says when to try again",
                                    "headers": {**copy.deepcopy(responses["400"]["headers"]),
                                                "Retry-After": copy.deepcopy(RETRY_AFTER_HEADER)},
                                    "content": {"application/json": {"schema": dict(_ERROR)}}}


def build_router(gateway: Gateway) -> APIRouter:
    router = APIRouter(route_class=openai_route_class(gateway), tags=["OpenAI-compatible"])
    keyed = _KeyedSessions(gateway)
    agents = AgentNames(gateway)

    @router.post(COMPLETIONS_PATH, response_model=None,
                 responses={200: {"model": ChatCompletion, "description": _STREAMED}, **_ERRORS, **_SEND_ERRORS})
    async def chat_completions(request: Request, body: ChatCompletionRequest,
                               session_header: SessionHeader = None,
                               idempotency_key: IdempotencyKey = None) -> Response:
        """A chat completion from an agent (``model``), or its stream with ``"stream": true``.

        The last message (the user's) is sent to the agent's session: the one
        ``X-Session-Id`` names, else a new one. Answers carry ``X-Session-Id``.
        """
        tenant = await current_tenant(request)
        request_id = request_id_of(request)
        agent = agents.resolve(tenant.id, body.model)
        text = validate_content(last_user_text(body))
        key = validate_idempotency_key(idempotency_key_text(idempotency_key))
        context = earlier_turns(body) if session_header is None else ()  # a session's own history is its record
        asked = body.output_bound()
        bound = agent.max_output_tokens if asked is None else min(agent.max_output_tokens, asked)
        session_id = await _session(gateway, keyed, tenant, agent, body.model, session_header, key, body.user)
        headers = {"X-Session-Id": session_id}
        try:
            if body.stream:
                created = int(gateway.clock.now().timestamp())
                stream = tenant.stream_message(session_id, text, idempotency_key=key, request_id=request_id,
                                               channel="openai", context=context, max_output_tokens=asked)
                first, items = await open_reply_stream(stream)
                include_usage = bool(body.stream_options and body.stream_options.include_usage)
                events = _completion_events(first, items, f"chatcmpl-{request_id}", created, body.model,
                                            include_usage, request_id, bound)
                return EventStream(events, items, headers=[(b"x-session-id", session_id.encode("ascii"))])
            reply = await tenant.send_message(session_id, text, idempotency_key=key, request_id=request_id,
                                              channel="openai", context=context, max_output_tokens=asked)
        except GatewayError as exc:
            if session_header is None and tenant.forget_draft(session_id):  # refused before anything was stored
                keyed.forget(tenant.id, key)
                headers = {}
            return openai_error_response(request_id, exc, headers)
        return json_response(completion(reply, body.model, bound), 200, headers)

    @router.get("/v1/models", response_model=None,
                responses={200: {"model": ModelList, "description": "The agents"}, **_ERRORS})
    async def list_models(request: Request) -> Response:
        """The tenant's agents as OpenAI models (``id``: the agent id; ``vbgateway.alias``: ``agent:<name>``)."""
        tenant = await current_tenant(request)
        owner = tenant.tenant.name
        return json_response({"object": "list", "data": [model_object(a, owner) for a in tenant.list_agents()]})

    @router.get("/v1/models/{model}", response_model=None,
                responses={200: {"model": ModelObject, "description": "The agent"}, **_ERRORS})
    async def get_model(request: Request, model: Annotated[str, Path(description="An agent id or agent:<name>")]
                        ) -> Response:
        """One agent as an OpenAI model."""
        tenant = await current_tenant(request)
        return json_response(model_object(agents.resolve(tenant.id, model), tenant.tenant.name))

    return router

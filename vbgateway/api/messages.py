"""POST /v1/sessions/{sessionId}/messages, written once.

Two doors lead here: the FastAPI route (``routes_sessions``), which the
OpenAPI document describes, and ``fastpath.MessagesFastPath``, which serves
the same path without FastAPI's per-request machinery. Both authenticate,
read the raw body and hand it to ``answer_message``, which parses it, sends
the message and builds every answer, errors included. Nothing that decides
what a client sees exists twice, so the two cannot drift apart.

The body is read as FastAPI reads JSON bodies: ``application/json`` or any
``+json`` type, parsed by orjson (with Python's json as the fallback for what
only it reads, such as NaN or UTF-16), then validated by ``MessageBody``.
A new reply is 201 Created; a replay of an idempotency key is 200 with the
stored reply.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson
import pydantic
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from ..errors import GatewayError
from ..tenant import TenantClient
from .envelope import error_response, gateway_error_response, internal_error_response, validation_error_response
from .schemas import MessageBody
from .sse import EventStream, delta_events, open_reply_stream, wants_event_stream
from .wire import model_response

__all__ = ["MESSAGES_PATH", "answer_message", "body_lost_response", "idempotency_key_text", "reply_status"]

MESSAGES_PATH = "/v1/sessions/{sessionId}/messages"
_log = logging.getLogger("vbgateway.api.errors")


def reply_status(replayed: bool) -> int:
    """201 for a reply made by this request, 200 for one replayed from an idempotency key."""
    return 200 if replayed else 201


def idempotency_key_text(header: str | None) -> str | None:
    """An Idempotency-Key header as the client wrote it: UTF-8 where its bytes are, else latin-1.

    HTTP carries header bytes, which Starlette reads as latin-1; a key typed
    in any language arrives as UTF-8 (the Python client sends it so), and
    must be the same key as in the embedded client. A value that does not
    decode to printable text is left as latin-1, as before.
    """
    if header is None or header.isascii():
        return header
    try:
        text = header.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return header
    return text if text.isprintable() else header


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    main, _, sub = content_type.split(";", 1)[0].strip().lower().partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def read_message(content_type: str | None, body: bytes) -> MessageBody:
    """The message of a request body; RequestValidationError (FastAPI's own) when there is none."""
    data: Any = body
    if not body:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    if _is_json(content_type):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            try:
                data = json.loads(body)
            except (ValueError, RecursionError) as exc:
                raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error",
                                               "ctx": {"error": str(exc)[:200]}}]) from None
    try:
        return MessageBody.model_validate(data)
    except pydantic.ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


async def answer_message(tenant: TenantClient, session_id: str, content_type: str | None, body: bytes,
                         idempotency_key: str | None, request_id: str, accept: str | None = None) -> Response:
    """The whole answer to one authenticated request: the reply, or the error envelope.

    With ``Accept: text/event-stream`` the reply is streamed (sse.py): errors
    before its first text are answered as without it.
    """
    try:
        message = read_message(content_type, body)
        key = idempotency_key_text(idempotency_key)
        if wants_event_stream(accept):
            stream = tenant.stream_message(session_id, message.content, idempotency_key=key, request_id=request_id)
            first, items = await open_reply_stream(stream)
            return EventStream(delta_events(first, items, request_id), items)
        reply = await tenant.send_message(session_id, message.content, idempotency_key=key, request_id=request_id)
    except RequestValidationError as exc:
        return validation_error_response(request_id, exc, content_type or "")
    except GatewayError as exc:
        return gateway_error_response(request_id, exc)
    except Exception as exc:
        _log.error("unhandled error on request %s", request_id, exc_info=exc)
        return internal_error_response(request_id)
    return model_response(reply, reply_status(reply.metadata.idempotency.replayed))


def body_lost_response(request_id: str) -> Response:
    """What a request whose client went away before its body arrived is answered (nobody reads it)."""
    return error_response(request_id, 400, "VALIDATION_ERROR", "the connection closed before the body arrived")

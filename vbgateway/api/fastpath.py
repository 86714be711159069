"""POST /v1/sessions/{sessionId}/messages without FastAPI's per-request machinery.

Why: sending a message is the API's hot path, and for it FastAPI's routing,
exit stacks, dependency solving and body validation cost more per request
than the gateway's own send path. This layer answers that one route
directly, in plain ASGI.

Why it is still the same API: it sits where the route would be reached
(inside the request-context and CORS layers, so ids, body limits, CORS
headers and the access log are theirs), authenticates before reading the
body as ``GatewayRoute`` does, and builds every answer with the functions
the route and the exception handlers use. It takes only bodies FastAPI would
read the same way: ``Content-Type: application/json``, a JSON object whose
``content`` is a string and whose ``role``, if given, is ``"user"``.
Anything else (another route, a root path, a body FastAPI would refuse or
read differently, a client that went away mid-body) is handed to FastAPI
unchanged, the body replayed, so its answer stays FastAPI's own.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import GatewayError
from ..gateway import Gateway
from .envelope import gateway_error_response, internal_error_response, new_request_id
from .wire import model_response

__all__ = ["MessagesFastPath"]

_log = logging.getLogger("vbgateway.api.errors")
_PATH = re.compile(r"/v1/sessions/([^/]+)/messages")  # Starlette's {sessionId}: one segment, any characters


class MessagesFastPath:
    """Answers well-formed chat messages itself; passes every other request to ``app``."""

    def __init__(self, app: ASGIApp, *, gateway: Gateway, route: BaseRoute) -> None:
        self.app = app
        self.gateway = gateway
        self.route = route  # the FastAPI route it stands in for: the access log names its path
        self.endpoint = getattr(route, "endpoint", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            match = _PATH.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        session_id = match.group(1)
        scope.update(route=self.route, endpoint=self.endpoint, path_params={"sessionId": session_id})
        state = scope.setdefault("state", {})
        request_id = state.get("request_id") or new_request_id()
        headers = _first_values(scope)
        try:
            tenant = self.gateway.connect(headers.get("x-api-key", ""))
        except GatewayError as exc:
            await gateway_error_response(request_id, exc)(scope, receive, send)
            return
        except Exception as exc:  # e.g. the database went away: as GatewayRoute answers it
            _log.error("unhandled error on request %s", request_id, exc_info=exc)
            await internal_error_response(request_id)(scope, receive, send)
            return
        state["tenant"] = tenant
        try:
            messages = await _read_body(receive)
        except GatewayError as exc:  # the body limit
            await gateway_error_response(request_id, exc)(scope, receive, send)
            return
        content = _content(headers.get("content-type"), messages)
        if content is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        try:
            reply = await tenant.send_message(session_id, content, idempotency_key=headers.get("idempotency-key"),
                                              request_id=request_id)
            response = model_response(reply)
        except GatewayError as exc:
            response = gateway_error_response(request_id, exc)
        except Exception as exc:
            _log.error("unhandled error on request %s", request_id, exc_info=exc)
            response = internal_error_response(request_id)
        await response(scope, receive, send)


_WANTED = {b"x-api-key": "x-api-key", b"content-type": "content-type", b"idempotency-key": "idempotency-key"}


def _first_values(scope: Scope) -> dict[str, str]:
    """The first value of the headers this route reads, decoded as Starlette decodes them (latin-1)."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = _WANTED.get(name.lower())
        if key is not None and key not in headers:
            headers[key] = value.decode("latin-1")
    return headers


async def _read_body(receive: Receive) -> list[Message]:
    """Every message of the request body, up to its last part or a disconnect."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _content(content_type: str | None, messages: list[Message]) -> str | None:
    """The message text, if FastAPI would accept this body as it stands; else None."""
    if messages[-1]["type"] != "http.request" or content_type is None:
        return None
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        return None
    try:
        body: Any = orjson.loads(messages[0].get("body", b"") if len(messages) == 1
                                 else b"".join(m.get("body", b"") for m in messages))
    except orjson.JSONDecodeError:  # also what Python's json reads and orjson does not (NaN, surrogates)
        return None
    if type(body) is not dict or type(body.get("content")) is not str or body.get("role", "user") != "user":
        return None
    if any(type(value) in (dict, list) for value in body.values()):
        return None  # nested extras: Python's json could refuse what orjson read (recursion); let FastAPI say
    return body["content"]  # type: ignore[no-any-return]


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that gives back the messages already read, then reads on."""
    queue = list(messages)

    async def replayed() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed

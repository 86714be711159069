"""POST /v1/sessions/{sessionId}/messages without FastAPI's per-request machinery.

Why: sending a message is the API's hot path, and for it FastAPI's routing,
exit stacks and dependency solving cost more per request than the gateway's
own send path. This layer answers that one route directly, in plain ASGI.

Why it is still the same API: it sits where the route would be reached
(inside the request-context and CORS layers, so ids, body limits, CORS
headers and the access log are theirs), authenticates and checks the
``chat`` scope before reading the body as ``GatewayRoute`` does, and then calls ``messages.answer_message``,
the handler the FastAPI route calls too: parsing, sending and every answer
are written once. Requests it does not serve (another path or method, an app
mounted under a root path) go to FastAPI unchanged.
"""

from __future__ import annotations

import logging
import re

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import GatewayError
from ..gateway import Gateway
from ..governance.scopes import ROUTE_SCOPES
from .envelope import gateway_error_response, internal_error_response, new_request_id
from .messages import MESSAGES_PATH, answer_message, body_lost_response

__all__ = ["SEND_SCOPE", "MessagesFastPath"]

_log = logging.getLogger("vbgateway.api.errors")
_PATH = re.compile(r"/v1/sessions/([^/]+)/messages")  # Starlette's {sessionId}: one segment, any characters
SEND_SCOPE = ROUTE_SCOPES[("POST", MESSAGES_PATH)]  # checked before the body is read, as GatewayRoute does


class MessagesFastPath:
    """Answers POST .../messages itself; passes every other request to ``app``."""

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
            tenant.require(SEND_SCOPE)
        except GatewayError as exc:
            await gateway_error_response(request_id, exc)(scope, receive, send)
            return
        except Exception as exc:  # e.g. the database went away: as GatewayRoute answers it
            _log.error("unhandled error on request %s", request_id, exc_info=exc)
            await internal_error_response(request_id)(scope, receive, send)
            return
        state["tenant"] = tenant
        try:
            body = await _read_body(receive)
        except GatewayError as exc:  # the body limit
            await gateway_error_response(request_id, exc)(scope, receive, send)
            return
        if body is None:
            response = body_lost_response(request_id)
        else:
            response = await answer_message(tenant, session_id, headers.get("content-type"), body,
                                            headers.get("idempotency-key"), request_id, headers.get("accept"))
        await response(scope, receive, send)


_WANTED = {b"x-api-key": "x-api-key", b"content-type": "content-type", b"idempotency-key": "idempotency-key",
           b"accept": "accept"}


def _first_values(scope: Scope) -> dict[str, str]:
    """The first value of the headers this route reads, decoded as Starlette decodes them (latin-1)."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = _WANTED.get(name.lower())
        if key is not None and key not in headers:
            headers[key] = value.decode("latin-1")
    return headers


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None when the client went away before it all arrived."""
    message: Message = await receive()
    if message["type"] != "http.request":
        return None
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body  # type: ignore[no-any-return]
    parts = [body]
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)

"""The outermost layer: request ids, body-size limits, access logs, last-resort 500s.

Written as plain ASGI rather than Starlette's ``BaseHTTPMiddleware``: it wraps
every request, and plain ASGI costs a few microseconds where the latter costs
a task and a memory stream per request.

- Every response, preflights and refusals included, carries ``X-Request-Id``:
  the client's own when it sent a well-formed one (``req_`` and 20 id
  characters, as ``TenantClient.send_message(request_id=...)`` takes), else a
  new one (ids of other formats, such as a proxy's UUIDs, are not adopted);
  a client's ``X-Correlation-Id`` is repeated in the answer and the log line
  (1-200 printable ASCII characters, else 400: it ends up in a header and a log).
- Bodies are limited per route (1 MB of JSON, 10 MB of audio plus multipart
  framing): a declared ``Content-Length`` over the limit is refused before a
  byte of the body is read; a chunked body is counted as it arrives.
- One JSON log line per request: ids, tenant, route template, status, latency.
  Never the API key, a query string or a body: they may hold secrets or
  customers' words. The same request is counted in the gateway's metrics
  (route template and status, never a raw path).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import GatewayError, PayloadTooLargeError
from ..ids import is_id
from ..metrics import GatewayMetrics
from .constraints import CORRELATION_ID, CORRELATION_ID_MAX
from .envelope import error_response, gateway_error_response, internal_error_response, new_request_id

__all__ = ["ACCESS_LOGGER", "RequestContextMiddleware"]

ACCESS_LOGGER = "vbgateway.api.access"
_log = logging.getLogger("vbgateway.api.errors")
_CORRELATION_ID = re.compile(CORRELATION_ID.encode("ascii"))


class RequestContextMiddleware:
    """Request id, size limits and access logging around the whole app."""

    def __init__(self, app: ASGIApp, *, monotonic: Callable[[], float], body_limit: int, voice_limit: int,
                 metrics: GatewayMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.monotonic = monotonic  # the gateway's clock: nothing else in the package reads time itself
        self.body_limit = body_limit
        self.voice_limit = voice_limit
        self.access = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.monotonic()
        declared_length, correlation_id, given_id = _context_headers(scope)
        request_id = given_id or new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        added = [(b"x-request-id", request_id.encode("ascii"))]
        refusal: ASGIApp | None = None
        if correlation_id is not None:
            if _CORRELATION_ID.fullmatch(correlation_id):
                added.append((b"x-correlation-id", correlation_id))
                state["correlation_id"] = correlation_id.decode("ascii")
            else:
                refusal = error_response(request_id, 400, "VALIDATION_ERROR",
                                         f"X-Correlation-Id is 1-{CORRELATION_ID_MAX} printable ASCII characters",
                                         {"field": "X-Correlation-Id"})
        status = 0

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), *added]}
            await send(message)

        limit = self.voice_limit if scope["path"].endswith("/voice") else self.body_limit
        try:
            refusal = refusal or _check_declared_length(declared_length, limit, request_id)
            if refusal is not None:
                await refusal(scope, receive, send_with_ids)
            else:
                await self.app(scope, _counting(receive, limit), send_with_ids)
        except GatewayError as exc:  # e.g. the body limit, tripped outside a route's own handling
            if status == 0:
                await gateway_error_response(request_id, exc)(scope, receive, send_with_ids)
        except Exception as exc:  # a bug below us: answer 500 in the envelope if we still can
            _log.error("unhandled error on request %s", request_id, exc_info=exc)
            if status == 0:
                await internal_error_response(request_id)(scope, receive, send_with_ids)
        finally:
            if self.metrics is not None:
                self.metrics.request(scope["method"], getattr(scope.get("route"), "path", None) or "unmatched", status,
                                     self.monotonic() - started)
            self._log(scope, state, request_id, status, started)

    def _log(self, scope: Scope, state: dict[str, Any], request_id: str, status: int, started: float) -> None:
        access = self.access
        if not access.isEnabledFor(logging.INFO):
            return
        route = scope.get("route")
        tenant = state.get("tenant")
        line = orjson.dumps({
            "event": "http_request",
            "requestId": request_id,
            "correlationId": state.get("correlation_id"),
            "tenantId": getattr(tenant, "id", None),
            "method": scope.get("method"),
            "route": getattr(route, "path", None),
            "status": status,
            "latencyMs": round((self.monotonic() - started) * 1000, 2),
        }).decode()
        # What ``access.info(line)`` does, minus the stack walk that finds the caller (always _log, here).
        access.handle(access.makeRecord(access.name, logging.INFO, __file__, 0, line, (), None, "_log"))


def _context_headers(scope: Scope) -> tuple[bytes | None, bytes | None, str | None]:
    """The first Content-Length and X-Correlation-Id as sent, and a well-formed X-Request-Id (one pass)."""
    length = correlation = given = None
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and length is None:
            length = value
        elif name == b"x-correlation-id" and correlation is None:
            correlation = value
        elif name == b"x-request-id" and given is None:
            given = value
    request_id = given.decode("latin-1") if given is not None else None
    return length, correlation, request_id if is_id(request_id, "req") else None


def _check_declared_length(declared: bytes | None, limit: int, request_id: str) -> ASGIApp | None:
    """A refusal to send at once when the declared body length is unusable, else None."""
    if declared is None:
        return None
    try:
        length = int(declared)
    except ValueError:
        length = -1
    if length < 0:
        return error_response(request_id, 400, "VALIDATION_ERROR", "invalid Content-Length header")
    if length > limit:
        return error_response(request_id, 413, "PAYLOAD_TOO_LARGE", f"request bodies here are limited to {limit} bytes",
                              {"limitBytes": limit, "sizeBytes": length}, headers={"Connection": "close"})
    return None


def _counting(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises PAYLOAD_TOO_LARGE once more than ``limit`` body bytes arrived."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLargeError(f"request bodies here are limited to {limit} bytes",
                                           details={"limitBytes": limit})
        return message

    return counted

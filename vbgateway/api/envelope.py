"""The error envelope, and the translation of every failure into it.

Clients branch on ``error.code``, so every non-2xx answer, whoever produced
it (the gateway, FastAPI's validation, Starlette's router, an unexpected bug),
leaves as ``{"error": {code, message, details, requestId}}``. Errors the
client cannot act on (DATABASE_*, bugs) become INTERNAL_ERROR with a generic
message: their cause goes to the server log, never into a body.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from ..errors import GatewayError, InternalError

__all__ = [
    "CIRCUIT_RETRY_AFTER",
    "RETRY_AFTER_HEADER",
    "error_response",
    "gateway_error_response",
    "http_error_response",
    "internal_error_response",
    "json_response",
    "new_request_id",
    "request_id_of",
    "retry_after",
    "validation_error_response",
    "visible_error",
]

_log = logging.getLogger("vbgateway.api.errors")
# Codes the API answers with as they are; anything else 5xx is hidden behind INTERNAL_ERROR.
_PUBLIC_5XX = {"ALL_PROVIDERS_FAILED", "STREAM_INTERRUPTED"}
_STATUS_CODES = {400: "VALIDATION_ERROR", 401: "INVALID_API_KEY", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
                 409: "IDEMPOTENCY_CONFLICT", 413: "PAYLOAD_TOO_LARGE", 415: "VALIDATION_ERROR",
                 422: "VALIDATION_ERROR"}
_MAX_ECHO = 200  # characters of client input (paths, methods) repeated in details


# Request ids name requests; they guard nothing, so a generator seeded once from the OS will do (a
# fresh ``secrets.token_hex`` cost a getrandom call per request). Its own instance, not the gateway's
# IdFactory, so that HTTP traffic never shifts the ids a seeded gateway hands out.
_request_ids = random.Random(secrets.randbits(128))


def new_request_id() -> str:
    """``req_`` plus 20 random hex characters (valid base32 id characters, like the gateway's ids)."""
    return f"req_{_request_ids.getrandbits(80):020x}"


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id") or new_request_id())


def json_response(payload: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response serialised by orjson (bytes, no second pass through FastAPI's encoder)."""
    return Response(orjson.dumps(payload), status_code=status_code, headers=headers, media_type="application/json")


def error_response(request_id: str, status: int, code: str, message: str, details: Mapping[str, Any] | None = None,
                   headers: Mapping[str, str] | None = None) -> Response:
    body = {"error": {"code": code, "message": message, "details": dict(details or {}), "requestId": request_id}}
    try:
        content = orjson.dumps(body)
    except TypeError:  # details the gateway promised to be JSON-safe were not: say so, generically
        content = orjson.dumps(body, default=str)
    return Response(content, status_code=status, headers=headers, media_type="application/json")


_INTERNAL_MESSAGE = "internal error; the request id identifies it in the log"


def internal_error_response(request_id: str) -> Response:
    return error_response(request_id, 500, "INTERNAL_ERROR", _INTERNAL_MESSAGE)


def visible_error(request_id: str, exc: Exception) -> GatewayError:
    """The error as a client may see it, whatever the answer's shape (envelope, stream event, OpenAI's).

    Errors the client cannot act on (DATABASE_*, bugs, anything not a
    ``GatewayError``) become INTERNAL_ERROR; their cause goes to the log here.
    """
    if isinstance(exc, GatewayError) and (exc.http_status < 500 or exc.code in _PUBLIC_5XX):
        return exc
    _log.error("error %s on request %s", getattr(exc, "code", type(exc).__name__), request_id, exc_info=exc)
    return InternalError(_INTERNAL_MESSAGE)


def gateway_error_response(request_id: str, exc: GatewayError) -> Response:
    shown = visible_error(request_id, exc)
    return error_response(request_id, shown.http_status, shown.code, shown.message, shown.details, retry_after(shown))


# The OpenAPI headers ``retry_after`` writes: on a 429, and on a send's 503 when every circuit breaker is
# open (absent on other 503s).
RETRY_AFTER_HEADER = {"description": "Seconds (rounded up) until the request would be admitted.", "required": True,
                      "schema": {"type": "integer", "minimum": 1}}
CIRCUIT_RETRY_AFTER = {**RETRY_AFTER_HEADER, "required": False,
                       "description": "With ALL_PROVIDERS_FAILED: seconds (rounded up) until a circuit breaker "
                                      "lets a probe through."}


def retry_after(exc: GatewayError) -> dict[str, str] | None:
    """``Retry-After`` for a 429 or 503 whose details say ``retryAfterMs``: whole seconds, rounded up, at
    least 1 (a client told 0 would come straight back; one told 1 waits the moment the wait rounds to)."""
    wait_ms = exc.details.get("retryAfterMs") if exc.http_status in (429, 503) else None
    if isinstance(wait_ms, bool) or not isinstance(wait_ms, int) or wait_ms < 0:
        return None
    return {"Retry-After": str(max(1, -(-wait_ms // 1000)))}


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_error_response(request_id: str, exc: RequestValidationError, content_type: str = "") -> Response:
    """FastAPI's validation report, in the core's shape: ``details.errors[{field, message}]``.

    The offending input is not echoed back (it may be large, or a secret).
    """
    errors = [{"field": "body" if e.get("type") == "json_invalid" else _field(e.get("loc", ())),
               "message": str(e.get("msg", "invalid"))} for e in exc.errors()]
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        message = "the request body is not valid JSON"
    elif "json" not in content_type and any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors()):
        got = repr(content_type[:60]) if content_type else "none"
        message = f"expected a JSON object with Content-Type: application/json, got {got}"
    else:
        message = "invalid input (" + "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3]) + ")"
    return error_response(request_id, 400, "VALIDATION_ERROR", message, {"errors": errors[:50]})


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route takes on this path (Starlette names only the first route's).

    HEAD only where a route answers it (FastAPI's routes do not; the static docs assets do).
    """
    routes = getattr(getattr(request.app, "router", None), "routes", ())
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in routes):
            allowed.append(method)
    return allowed


def http_error_response(request: Request, exc: HTTPException) -> Response:
    """Starlette's own refusals (no route, wrong method, unreadable body) in the envelope."""
    request_id = request_id_of(request)
    cause = exc.__cause__
    if isinstance(cause, GatewayError):  # e.g. the body limit, raised while FastAPI read the body
        return gateway_error_response(request_id, cause)
    status = exc.status_code
    method, path = request.method[:_MAX_ECHO], request.url.path[:_MAX_ECHO]
    if status == 404:
        return error_response(request_id, 404, "NOT_FOUND", f"no route {method} {path}", {"path": path})
    if status == 405:
        allowed = _allowed_methods(request)
        return error_response(request_id, 405, "METHOD_NOT_ALLOWED", f"method {method} is not allowed on {path}",
                              {"method": method, "allowed": allowed}, headers={"Allow": ", ".join(allowed)})
    if status >= 500:
        return internal_error_response(request_id)
    code = _STATUS_CODES.get(status, "VALIDATION_ERROR")
    detail = exc.detail if isinstance(exc.detail, str) else "the request could not be processed"
    return error_response(request_id, status if code != "VALIDATION_ERROR" else 400, code, detail[:_MAX_ECHO])

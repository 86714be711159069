"""The route class every /v1 endpoint uses: authenticate first, never leak a bug.

Authentication, and the check of the scope the operation needs
(governance/scopes.py: INSUFFICIENT_SCOPE 403), run in the route wrapper,
before FastAPI reads and validates the body, so a request without a valid
key is INVALID_API_KEY whatever its body holds (a malformed body does not
reveal that the route parses JSON).
Unexpected exceptions become INTERNAL_ERROR here, inside the CORS layer, so a
browser still sees the envelope.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import Response

from ..errors import GatewayError
from ..gateway import Gateway
from ..governance.scopes import scope_for_route
from ..tenant import TenantClient
from .envelope import internal_error_response, request_id_of
from .schemas import ErrorResponse

__all__ = ["API_KEY_SCHEME", "CurrentTenant", "current_tenant", "error_responses", "gateway_route_class"]

_log = logging.getLogger("vbgateway.api.errors")

API_KEY_SCHEME = {"type": "apiKey", "in": "header", "name": "X-API-Key",
                  "description": "A tenant's secret key (sk_...), shown once at creation."}


async def current_tenant(request: Request) -> TenantClient:
    """The tenant the route wrapper authenticated.

    ``async`` on purpose: FastAPI runs plain-``def`` dependencies in a thread
    pool, a hop that cost a third of the send path's throughput.
    """
    return request.state.tenant  # type: ignore[no-any-return]


CurrentTenant = Annotated[TenantClient, Depends(current_tenant)]


def gateway_route_class(gateway: Gateway) -> type[APIRoute]:
    """An ``APIRoute`` subclass bound to one gateway."""

    class GatewayRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()
            scope = scope_for_route(self.methods, self.path)

            async def authenticated(request: Request) -> Response:
                try:
                    tenant = request.state.tenant = gateway.connect(request.headers.get("x-api-key", ""))
                    tenant.require(scope)
                    return await handler(request)
                except (GatewayError, HTTPException, RequestValidationError):
                    raise  # the app's exception handlers put these in the envelope
                except Exception as exc:
                    request_id = request_id_of(request)
                    _log.error("unhandled error on request %s", request_id, exc_info=exc)
                    return internal_error_response(request_id)

            return authenticated

    return GatewayRoute


_MEANING = {400: "VALIDATION_ERROR (also malformed JSON or a bad X-Correlation-Id) or INVALID_AUDIO",
            401: "INVALID_API_KEY: missing, unknown, revoked or expired key",
            402: "BUDGET_EXCEEDED: the most this reply can cost does not fit in the tenant's monthly budget "
                 "(details: limit, spent, reserved, requested, month, requestId); no provider was called",
            403: "INSUFFICIENT_SCOPE: the key lacks the scope this operation needs (details.required)",
            404: "AGENT_NOT_FOUND / SESSION_NOT_FOUND (also another tenant's ids) or NOT_FOUND",
            409: "IDEMPOTENCY_CONFLICT: the key was used with a different request",
            413: "PAYLOAD_TOO_LARGE: body over 1 MB, audio over 10 MB",
            429: "RATE_LIMIT_EXCEEDED: a rate limit of the tenant or the key; Retry-After and details.retryAfterMs "
                 "say when to try again",
            500: "INTERNAL_ERROR", 502: "ALL_PROVIDERS_FAILED: details.attempts lists every try",
            503: "ALL_PROVIDERS_FAILED: every provider's circuit breaker is open and the gateway fails fast; "
                 "none was called (details.attempts: each skipped, details.retryAfterMs: when one lets a probe through)"}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error envelope (400, 401, 413 and 500 can happen on every route)."""
    wanted = sorted({*statuses, 400, 401, 413, 500})
    return {status: {"model": ErrorResponse, "description": _MEANING[status]} for status in wanted}

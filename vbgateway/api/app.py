"""``create_app(gateway)``: the /v1 HTTP API of api-contract.md over one Gateway.

A thin layer: routes parse, call the tenant client, and serialise the core
models' camelCase form. Layers, outermost first:

    RequestContextMiddleware   X-Request-Id, X-Correlation-Id, body limits, access log, last-resort 500
    CORSMiddleware             a dashboard on another localhost port, or on the origins given
    MessagesFastPath           POST .../messages answered without FastAPI's machinery (fastpath.py)
    exception handlers         GatewayError / validation / routing -> error envelope
    GatewayRoute               X-API-Key -> TenantClient, and its scope, before the body is read

The app does not own the gateway: whoever opened it closes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import __version__
from ..errors import GatewayError
from ..gateway import Gateway
from ..voice import MAX_AUDIO_BYTES
from . import (
    routes_health,
    routes_metrics,
    routes_openai,
    routes_operator,
    routes_sessions,
    routes_tenant,
    routes_usage,
)
from .docs import install_docs
from .envelope import gateway_error_response, http_error_response, request_id_of, validation_error_response
from .fastpath import MessagesFastPath
from .messages import MESSAGES_PATH
from .middleware import RequestContextMiddleware
from .openapi import build_document
from .routing import gateway_route_class

__all__ = ["CORS_ALLOWED_HEADERS", "CORS_EXPOSED_HEADERS", "DEFAULT_BODY_LIMIT", "LOCALHOST_ORIGINS",
           "VOICE_BODY_LIMIT", "create_app"]

TITLE = "VocalBridge Ops gateway"
DEFAULT_BODY_LIMIT = 1024 * 1024  # JSON bodies
VOICE_BODY_LIMIT = MAX_AUDIO_BYTES + 64 * 1024  # 10 MB of audio plus multipart framing and fields
LOCALHOST_ORIGINS = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$"
CORS_ALLOWED_HEADERS = ["X-API-Key", "Idempotency-Key", "Content-Type", "X-Request-Id", "X-Correlation-Id",
                        "Authorization", "X-Session-Id"]
CORS_EXPOSED_HEADERS = ["X-Request-Id", "X-Correlation-Id", "Idempotency-Key", "Retry-After", "X-Session-Id"]


def create_app(gateway: Gateway, *, cors_origins: list[str] | None = None,
               cors_origin_regex: str | None = LOCALHOST_ORIGINS, body_limit: int = DEFAULT_BODY_LIMIT,
               operator_secret: str | None = None) -> FastAPI:
    """The HTTP API over ``gateway``.

    CORS allows any localhost port by default (the dashboard's dev server
    runs on another port than the API); ``cors_origins`` adds a deployed
    dashboard's exact origins (``vbgateway serve --cors-origin``).
    ``operator_secret`` adds the /v1/operator routes (routes_operator.py), guarded by it;
    without one they do not exist. ``GET /metrics`` (routes_metrics.py) is served to loopback
    peers, and to others carrying that secret.
    """
    app = FastAPI(title=TITLE, version=__version__, docs_url=None, redoc_url=None, lifespan=_finishing(gateway),
                  description="The /v1 contract of VocalBridge Ops. Every non-2xx answer is the error envelope.")
    app.state.gateway = gateway
    route_class = gateway_route_class(gateway)
    routers = {module: module.build_router(gateway, route_class)
               for module in (routes_tenant, routes_sessions, routes_usage)}
    for router in routers.values():
        app.include_router(router)
    app.include_router(routes_openai.build_router(gateway))  # /v1/chat/completions, /v1/models
    app.include_router(routes_health.build_router(gateway))
    app.include_router(routes_metrics.build_router(gateway, operator_secret))
    if operator_secret:
        app.include_router(routes_operator.build_router(gateway, operator_secret))
    install_docs(app, TITLE)

    async def on_gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return gateway_error_response(request_id_of(request), exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return validation_error_response(request_id_of(request), exc, request.headers.get("content-type", ""))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return http_error_response(request, exc)

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    messages_route = next(route for route in routers[routes_sessions].routes
                          if getattr(route, "path", None) == MESSAGES_PATH)
    app.add_middleware(MessagesFastPath, gateway=gateway, route=messages_route)  # innermost: inside CORS
    app.add_middleware(CORSMiddleware, allow_origins=cors_origins or [], allow_origin_regex=cors_origin_regex,
                       allow_methods=["GET", "POST", "PUT", "OPTIONS"], allow_headers=CORS_ALLOWED_HEADERS,
                       expose_headers=CORS_EXPOSED_HEADERS, max_age=600)
    app.add_middleware(RequestContextMiddleware, monotonic=gateway.clock.monotonic, body_limit=body_limit,
                       voice_limit=max(body_limit, VOICE_BODY_LIMIT), metrics=gateway.metrics)
    app.openapi = lambda: _openapi(app, gateway)  # type: ignore[method-assign]
    return app


def _finishing(gateway: Gateway) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: at shutdown, streamed replies whose clients left are finished (stored, billed) first."""
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await gateway.sender.finish_detached()
    return lifespan


def _openapi(app: FastAPI, gateway: Gateway) -> dict[str, Any]:
    """The document, rebuilt if the gateway's providers changed (its enum of provider names must stay true)."""
    names = tuple(sorted(gateway.providers))
    if app.openapi_schema is None or getattr(app.state, "openapi_providers", None) != names:
        app.openapi_schema = build_document(app, names)
        app.state.openapi_providers = names
    return app.openapi_schema

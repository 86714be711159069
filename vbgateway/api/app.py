"""``create_app(gateway)``: the /v1 HTTP API of api-contract.md over one Gateway.

A thin layer: routes parse, call the tenant client, and serialise the core
models' camelCase form. Layers, outermost first:

    RequestContextMiddleware   X-Request-Id, body limits, access log, last-resort 500
    CORSMiddleware             a dashboard on another localhost port
    MessagesFastPath           POST .../messages answered without FastAPI's machinery (fastpath.py)
    exception handlers         GatewayError / validation / routing -> error envelope
    GatewayRoute               X-API-Key -> TenantClient before the body is read

The app does not own the gateway: whoever opened it closes it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import __version__
from ..errors import GatewayError
from ..gateway import Gateway
from ..voice import MAX_AUDIO_BYTES
from . import routes_sessions, routes_tenant, routes_usage
from .docs import install_docs
from .envelope import gateway_error_response, http_error_response, request_id_of, validation_error_response
from .fastpath import MessagesFastPath
from .middleware import RequestContextMiddleware
from .routing import API_KEY_SCHEME, gateway_route_class

__all__ = ["DEFAULT_BODY_LIMIT", "LOCALHOST_ORIGINS", "VOICE_BODY_LIMIT", "create_app"]

TITLE = "VocalBridge Ops gateway"
DEFAULT_BODY_LIMIT = 1024 * 1024  # JSON bodies
VOICE_BODY_LIMIT = MAX_AUDIO_BYTES + 64 * 1024  # 10 MB of audio plus multipart framing and fields
LOCALHOST_ORIGINS = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$"
CORS_HEADERS = ["X-API-Key", "Idempotency-Key", "Content-Type", "X-Request-Id"]


def create_app(gateway: Gateway, *, cors_origins: list[str] | None = None,
               cors_origin_regex: str | None = LOCALHOST_ORIGINS, body_limit: int = DEFAULT_BODY_LIMIT) -> FastAPI:
    """The HTTP API over ``gateway``.

    CORS allows any localhost port by default (the dashboard's dev server
    runs on another port than the API); pass ``cors_origins`` for a deployed
    dashboard's exact origins.
    """
    app = FastAPI(title=TITLE, version=__version__, docs_url=None, redoc_url=None,
                  description="The /v1 contract of VocalBridge Ops. Every non-2xx answer is the error envelope.")
    app.state.gateway = gateway
    route_class = gateway_route_class(gateway)
    routers = {module: module.build_router(gateway, route_class)
               for module in (routes_tenant, routes_sessions, routes_usage)}
    for router in routers.values():
        app.include_router(router)
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
                          if getattr(route, "path", None) == routes_sessions.MESSAGES_PATH)
    app.add_middleware(MessagesFastPath, gateway=gateway, route=messages_route)  # innermost: inside CORS
    app.add_middleware(CORSMiddleware, allow_origins=cors_origins or [], allow_origin_regex=cors_origin_regex,
                       allow_methods=["GET", "POST", "PUT", "OPTIONS"], allow_headers=CORS_HEADERS,
                       expose_headers=["X-Request-Id"], max_age=600)
    app.add_middleware(RequestContextMiddleware, monotonic=gateway.clock.monotonic, body_limit=body_limit,
                       voice_limit=max(body_limit, VOICE_BODY_LIMIT))
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, minus the 422 answers it adds but this API never gives (it answers 400),
    plus the X-API-Key scheme on every /v1 operation (authentication runs in the route class,
    not in a FastAPI dependency, so FastAPI cannot see it)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for route, path in schema.get("paths", {}).items():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
                if route.startswith("/v1/"):
                    operation["security"] = [{"APIKeyHeader": []}]
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["APIKeyHeader"] = API_KEY_SCHEME
        schemas = schema["components"].get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema

"""GET /metrics: the gateway's figures in the Prometheus text format, for the operator's scraper.

Not a tenant's: the figures name every tenant, so no API key opens them.
They are served to a scraper on the same machine (a loopback peer), and to
any other peer only with the operator secret as a bearer token
(``Authorization: Bearer <secret>``, what Prometheus sends with
``authorization: {credentials_file: ...}``) or in ``X-Operator-Secret``.
A gateway without an operator secret serves them on loopback only. Behind
a reverse proxy on the same machine every request comes from loopback: do
not route /metrics through such a proxy (docs/providers.md).
"""

from __future__ import annotations

import hmac
from ipaddress import ip_address

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..errors import AuthenticationError
from ..gateway import Gateway
from ..metrics import CONTENT_TYPE
from .schemas import ErrorResponse

__all__ = ["METRICS_PATH", "build_router", "is_loopback"]

METRICS_PATH = "/metrics"
MAX_SECRET_CHARS = 256


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        address = ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


def _given_secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-operator-secret") or None


def build_router(gw: Gateway, operator_secret: str | None) -> APIRouter:
    router = APIRouter(tags=["metrics"])
    expected = operator_secret.encode() if operator_secret else None

    @router.get(METRICS_PATH, response_class=Response, responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}},
              "description": "Every figure in the Prometheus text format (version 0.0.4)."},
        400: {"model": ErrorResponse, "description": "VALIDATION_ERROR: a bad X-Correlation-Id"},
        401: {"model": ErrorResponse, "description": "OPERATOR_SECRET_REQUIRED: not on loopback and no secret"},
        403: {"model": ErrorResponse, "description": "INVALID_OPERATOR_SECRET, or METRICS_LOOPBACK_ONLY when the "
                                                     "gateway has no operator secret"}})
    async def metrics(request: Request) -> Response:
        """The gateway's request, provider, token and cost figures, for a Prometheus scraper.

        Served to loopback peers, and to others that carry the operator secret as a bearer token.
        """
        client = request.client
        if not is_loopback(client.host if client else None):
            given = _given_secret(request)
            if expected is None:
                raise AuthenticationError("/metrics is served on loopback only (this gateway has no operator secret)",
                                          code="METRICS_LOOPBACK_ONLY", http_status=403)
            if given is None:
                raise AuthenticationError("/metrics needs the operator secret as a bearer token",
                                          code="OPERATOR_SECRET_REQUIRED", http_status=401)
            if not hmac.compare_digest(given.encode("utf-8", "replace")[:MAX_SECRET_CHARS], expected):
                raise AuthenticationError("that is not this gateway's operator secret",
                                          code="INVALID_OPERATOR_SECRET", http_status=403)
        return Response(gw.metrics.render(), media_type=CONTENT_TYPE)

    return router

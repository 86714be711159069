"""GET /health: is the server up, and can it read its database? No API key needed.

Load balancers and uptime checks call it without a tenant's key, as they did
with the original service. The answer names no tenant, file or path: only
whether the database answers, its schema version and how many committed
records wait to be applied to DuckDB (they are safe in the journal meanwhile).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..gateway import Gateway
from .envelope import error_response, json_response, request_id_of
from .schemas import ErrorResponse, HealthResponse

__all__ = ["build_router"]

_log = logging.getLogger("vbgateway.api.errors")


def build_router(gw: Gateway) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health", response_model=HealthResponse, responses={
        400: {"model": ErrorResponse, "description": "VALIDATION_ERROR: a bad X-Correlation-Id"},
        503: {"model": ErrorResponse, "description": "SERVICE_UNAVAILABLE: the database does not answer"}})
    def health(request: Request) -> Response:
        """``{"status": "ok"}`` and the database's state; 503 when the database does not answer.

        A plain ``def``: FastAPI runs it in its thread pool, so a database lent to a reader (a report
        holding the file) makes this check wait, as every read does, without holding up the event loop.
        """
        try:
            version = gw.store.schema_version
            pending = gw.store.pending_records
        except Exception as exc:
            request_id = request_id_of(request)
            _log.warning("health check %s: the database does not answer (%s)", request_id, type(exc).__name__)
            return error_response(request_id, 503, "SERVICE_UNAVAILABLE", "the database does not answer",
                                  {"database": "unavailable"})
        return json_response({"status": "ok",
                              "database": {"status": "ok", "schemaVersion": version, "pendingRecords": pending}})

    return router

"""/v1/operator: what the notebooks need from the local service besides a tenant's API.

Seeding the demo tenants and minting a key are operator acts (no tenant key
can do them), yet every notebook kernel needs them when it talks to the
shared local service instead of opening the database itself. They are served
only by an app created with an operator secret (``vbgateway serve
--operator-secret-file``; the local service always has one, in a file next to
the database that only its owner can read), and every request must carry it in
``X-Operator-Secret``: none gives 401 OPERATOR_SECRET_REQUIRED, a wrong one
403 INVALID_OPERATOR_SECRET. The comparison takes constant time.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from pydantic import Field
from starlette.responses import Response

from ..errors import AuthenticationError
from ..gateway import Gateway
from ..seed import seed_demo
from . import routes_breakers, routes_limits
from .constraints import NON_BLANK_TEXT
from .envelope import json_response
from .schemas import ErrorResponse, _Wire

__all__ = ["OPERATOR_HEADER", "OPERATOR_PREFIX", "OPERATOR_SCHEME", "build_router"]

OPERATOR_HEADER = "X-Operator-Secret"
OPERATOR_PREFIX = "/v1/operator/"
OPERATOR_SCHEME = {"type": "apiKey", "in": "header", "name": OPERATOR_HEADER,
                   "description": "The local service's operator secret (a file next to the database, mode 0600)."}
MAX_SECRET_CHARS = 256
MAX_TENANT_NAME_CHARS = 200


class OperatorTenant(_Wire):
    id: str
    name: str


class SeedAnswer(_Wire):
    seeded: bool = Field(description="true when the demo tenants were created by this call")
    tenants: list[OperatorTenant]
    providers: list[str] = Field(description="the providers agents may name on this gateway")


class KeyRequest(_Wire):
    tenant_name: str = Field(alias="tenantName", min_length=1, max_length=MAX_TENANT_NAME_CHARS,
                             pattern=NON_BLANK_TEXT)


class KeyAnswer(_Wire):
    api_key: str = Field(alias="apiKey", description="shown once; only its hash is stored")
    tenant: OperatorTenant


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    meaning = {400: "VALIDATION_ERROR", 401: "OPERATOR_SECRET_REQUIRED: no X-Operator-Secret",
               403: "INVALID_OPERATOR_SECRET: not this service's secret", 404: "TENANT_NOT_FOUND",
               413: "PAYLOAD_TOO_LARGE", 500: "INTERNAL_ERROR"}
    wanted = sorted({*statuses, 400, 401, 403, 413, 500})
    return {s: {"model": ErrorResponse, "description": meaning[s]} for s in wanted}


def build_router(gw: Gateway, secret: str) -> APIRouter:
    expected = secret.encode()

    def operator(x_operator_secret: Annotated[str | None, Header(include_in_schema=False)] = None) -> None:
        if not x_operator_secret:
            raise AuthenticationError("this route needs the operator secret in X-Operator-Secret",
                               code="OPERATOR_SECRET_REQUIRED", http_status=401)
        given = x_operator_secret.encode("utf-8", "replace")[:MAX_SECRET_CHARS]
        if not hmac.compare_digest(given, expected):
            raise AuthenticationError("that is not this service's operator secret", code="INVALID_OPERATOR_SECRET",
                               http_status=403)

    router = APIRouter(tags=["operator"], dependencies=[Depends(operator)])

    def tenants() -> list[dict[str, str]]:
        return [{"id": t.id, "name": t.name} for t in gw.list_tenants()]

    @router.post("/v1/operator/seed", response_model=SeedAnswer, responses=_errors())
    async def seed() -> Response:
        """Create the demo tenants and their agents when the database has none (otherwise change nothing)."""
        created = False
        if not gw.list_tenants():
            created = seed_demo(gw).created
        return json_response({"seeded": created, "tenants": tenants(), "providers": sorted(gw.providers)})

    @router.post("/v1/operator/api-keys", status_code=201, response_model=KeyAnswer, responses=_errors(404))
    async def mint_key(body: KeyRequest) -> Response:
        """A new API key for the tenant of that name (the notebooks keep theirs in a file)."""
        tenant = gw.tenant_named(body.tenant_name, not_found_code="TENANT_NOT_FOUND")
        _, key = gw.create_api_key(tenant.id)
        return json_response({"apiKey": key, "tenant": {"id": tenant.id, "name": tenant.name}}, 201)

    router.include_router(routes_breakers.build_router(gw, _errors()))  # GET /v1/operator/breakers
    router.include_router(routes_limits.build_router(gw, _errors(404)))  # /v1/operator/tenants/{id}/...
    return router

"""/v1/operator/tenants/{tenantId}/budget and /rate-limit: a tenant's limits, changed while the gateway serves.

Finance raises a tenant's budget at month end, an operator throttles a
tenant that floods a vendor: neither should have to stop the gateway, which
keeps budgets and limits in memory and holds the file. These routes change
the serving gateway's own ledger and limiter, and store the change as the
Python API does (``Gateway.set_budget``, ``Gateway.set_rate_limit``): the
next request is admitted under it. ``vbgateway budget set`` and ``limits
set`` use them while a gateway serves the file (commands/serving.py).

Values are exact: ``monthlyUsd`` is decimal text ("50", "1250.75"), as money
is everywhere in the gateway; alert thresholds are shares of the limit in
(0, 1], in any order, rounded up to the millionth (the precision they are
stored with). Every rule is in the OpenAPI document; a rule the document
cannot state (none here) would be refused the same way.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BeforeValidator, ConfigDict, Field, StrictInt, WithJsonSchema, field_validator
from starlette.responses import Response

from ..errors import NotFoundError
from ..gateway import Gateway
from ..governance.budget_values import DEFAULT_ALERT_AT, MAX_MONTHLY_USD, Budget
from ..governance.rate_limits import MAX_PER_MINUTE
from ..models import RateLimit
from .schemas import _Wire
from .wire import model_response

__all__ = ["MONTHLY_USD_PATTERN", "BudgetBody", "RateLimitBody", "build_router"]

# More than 0 and below MAX_MONTHLY_USD (10^12), at most 10 decimal places (the store's exact money).
MONTHLY_USD_PATTERN = r"^(?:[1-9][0-9]{0,11}(?:\.[0-9]{1,10})?|0\.[0-9]{0,9}[1-9])$"
MAX_ALERTS = 10
_MILLIONTH = Decimal("0.000001")
TenantId = Annotated[str, Path(alias="tenantId", min_length=1, max_length=100, description="The tenant's id (tnt_...).")]


def _whole(value: Any) -> Any:
    """A JSON integer (also written 5.0), never "5" or true."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


PerMinute = Annotated[StrictInt, BeforeValidator(_whole), Field(ge=1, le=MAX_PER_MINUTE),
                      WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_PER_MINUTE})]
Share = Annotated[float, Field(gt=0, le=1, strict=True)]


class BudgetBody(_Wire):
    """PUT .../budget: the limit and its alert thresholds (an unknown field, a typo, is refused)."""

    model_config = ConfigDict(extra="forbid")

    monthly_usd: str = Field(pattern=MONTHLY_USD_PATTERN, description=(
        f'USD a UTC calendar month, as decimal text ("50", "1250.75"): more than 0, below {MAX_MONTHLY_USD:,.0f}, '
        "at most 10 decimal places."))
    alert_at: list[Share] = Field(
        default_factory=lambda: [float(t) for t in DEFAULT_ALERT_AT], max_length=MAX_ALERTS,
        json_schema_extra={"uniqueItems": True},
        description="Shares of the limit in (0, 1], any order, each logged and recorded once a month when the "
                    "month's spend reaches it; rounded up to the millionth. Default [0.5, 0.8, 1.0].")

    @field_validator("alert_at")
    @classmethod
    def _distinct(cls, value: list[float]) -> list[float]:
        if len(set(value)) != len(value):
            raise ValueError("alert thresholds are distinct")
        return value

    def thresholds(self) -> list[Decimal]:
        """The shares as written (their shortest repr: 0.07 is 0.07), rounded up to the millionth, ascending,
        once each (two may round to the same)."""
        return sorted({Decimal(repr(share)).quantize(_MILLIONTH, rounding=ROUND_CEILING) for share in self.alert_at})


class RateLimitBody(_Wire):
    """PUT .../rate-limit: requests and tokens per minute (null or absent: no limit of that kind)."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: PerMinute | None = None
    tokens_per_minute: PerMinute | None = None


class TenantBudget(_Wire):
    tenant_id: str
    budget: Budget | None = Field(description="null: the tenant has no budget")


class TenantRateLimit(_Wire):
    tenant_id: str
    rate_limit: RateLimit | None = Field(description="null: the tenant has no rate limit")


def _known_tenant(request: Request, tenant_id: TenantId) -> str:
    """The path's tenant, which must exist (404 TENANT_NOT_FOUND before any change)."""
    if request.app.state.gateway.store.get_tenant(tenant_id) is None:
        raise NotFoundError("no tenant has that id", code="TENANT_NOT_FOUND", details={"tenantId": tenant_id[:100]})
    return tenant_id


Tenant = Annotated[str, Depends(_known_tenant)]


def build_router(gw: Gateway, errors: dict[int | str, dict[str, Any]]) -> APIRouter:
    router = APIRouter()
    budget_path, limit_path = "/v1/operator/tenants/{tenantId}/budget", "/v1/operator/tenants/{tenantId}/rate-limit"

    @router.get(budget_path, response_model=TenantBudget, responses=errors)
    async def get_budget(tenant: Tenant) -> Response:
        """The tenant's budget this month: limit, spent, reserved, remaining and the alerts recorded."""
        return model_response(TenantBudget(tenant_id=tenant, budget=gw.get_budget(tenant)))

    @router.put(budget_path, response_model=TenantBudget, responses=errors)
    async def put_budget(tenant: Tenant, body: BudgetBody) -> Response:
        """Set the tenant's monthly budget; the next request is admitted under it."""
        budget = gw.set_budget(tenant, Decimal(body.monthly_usd), body.thresholds())
        return model_response(TenantBudget(tenant_id=tenant, budget=budget))

    @router.delete(budget_path, response_model=TenantBudget, responses=errors)
    async def delete_budget(tenant: Tenant) -> Response:
        """Remove the tenant's budget (its alerts stay recorded)."""
        return model_response(TenantBudget(tenant_id=tenant, budget=gw.set_budget(tenant, None)))

    @router.get(limit_path, response_model=TenantRateLimit, responses=errors)
    async def get_rate_limit(tenant: Tenant) -> Response:
        """The tenant's whole rate limit (its keys may have their own)."""
        return model_response(TenantRateLimit(tenant_id=tenant, rate_limit=gw.get_rate_limit(tenant)))

    @router.put(limit_path, response_model=TenantRateLimit, responses=errors)
    async def put_rate_limit(tenant: Tenant, body: RateLimitBody) -> Response:
        """Set the tenant's rate limit (both null removes it); its buckets start full."""
        limit = gw.set_rate_limit(tenant, body.requests_per_minute, body.tokens_per_minute)
        return model_response(TenantRateLimit(tenant_id=tenant, rate_limit=limit))

    return router

"""Usage figures of the key's tenant: rollup, events, monthly cost."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

import orjson
from fastapi import APIRouter, Query
from fastapi.routing import APIRoute
from starlette.responses import Response

from ..analytics import DEFAULT_EVENTS_LIMIT, MAX_EVENTS_LIMIT, day_range, month_end_forecast, parse_day
from ..analytics.aggregated import cached
from ..gateway import Gateway
from .envelope import json_response
from .routing import CurrentTenant, error_responses
from .schemas import MonthlyResponse, RollupResponse, UsageEventsResponse
from .wire import budget_payload, forecast_payload, monthly_payload, rollup_payload, usage_events_payload

__all__ = ["DAY_PATTERN", "DEFAULT_RANGE_DAYS", "MAX_MONTHS", "MAX_OFFSET", "build_router"]

DEFAULT_RANGE_DAYS = 30
_LAST_INSTANT = timedelta(microseconds=1)  # a day range's upper end is exclusive: its last day holds this instant
DAY_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"  # date.fromisoformat alone also reads 20260131 and 2026-W05-6
_AS_DATE = {"format": "date"}
From = Annotated[str | None, Query(
    alias="from", pattern=DAY_PATTERN, json_schema_extra=_AS_DATE,
    description=f"First UTC day, inclusive; not after `to` (default: {DEFAULT_RANGE_DAYS - 1} days before `to`). "
                "Any range is allowed: all time is 0001-01-01..9999-12-31.")]
To = Annotated[str | None, Query(alias="to", pattern=DAY_PATTERN, json_schema_extra=_AS_DATE,
                                 description="Last UTC day, inclusive (default: today).")]
Limit = Annotated[int, Query(ge=1, le=MAX_EVENTS_LIMIT, description=f"at most {MAX_EVENTS_LIMIT}")]
MAX_OFFSET = 2**53 - 1  # any page a client can count to (JSON's exact integers), well within SQL's BIGINT
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Events to skip, newest first (for the next page).")]
MAX_MONTHS = 120
Months = Annotated[int, Query(ge=1, le=MAX_MONTHS, description="Calendar months, the current one included.")]
WithForecast = Annotated[bool, Query(description="Add `forecast`: the month of `to`, spend so far and at this pace "
                                                 "by its end, with an 80% interval.")]


def build_router(gw: Gateway, route_class: type[APIRoute]) -> APIRouter:
    router = APIRouter(route_class=route_class, tags=["usage"])

    def days(start: str | None, end: str | None) -> tuple[str | date, date]:
        """The range asked for; missing ends mean the last 30 days up to today (UTC)."""
        last = parse_day(end, "to") if end is not None else gw.clock.now().date()
        if start is not None:
            return start, last
        span = timedelta(days=DEFAULT_RANGE_DAYS - 1)
        return (last - span if last - date.min >= span else date.min), last  # 0001-01-05 has no 29 days before

    @router.get("/v1/usage/rollup", response_model=RollupResponse, responses=error_responses(400))
    async def rollup(tenant: CurrentTenant, start: From = None, end: To = None,
                     forecast: WithForecast = False) -> Response:
        """Totals, per provider and the (up to 10) costliest agents for UTC days ``from``..``to``, both inclusive.

        With ``forecast=true``, also the month of ``to``: spend so far and at this pace by its end.
        ``budget`` (only for a tenant with a budget): its use in the current UTC month, whatever the range.
        """
        lower, upper = day_range(*days(start, end), max_days=None)
        last = (upper - _LAST_INSTANT).date()
        today = gw.clock.now().date() if forecast else None  # a forecast changes with the day as well as the data

        def answer() -> bytes:
            payload = rollup_payload(tenant.usage_rollup(lower, last))
            if forecast:
                payload["forecast"] = forecast_payload(month_end_forecast(gw, tenant.id, month=f"{last:%Y-%m}"))
            return orjson.dumps(payload)

        # The answer's bytes are kept until the store next changes: dashboards ask the same periods again and again.
        body = cached(gw, ("rollup-body", tenant.id, lower, upper, today), answer)
        budget = tenant.budget()  # read apart from the kept bytes: it follows the month and the budget's settings
        if budget is None:
            return Response(body, media_type="application/json")
        return json_response({**orjson.loads(body), "budget": budget_payload(budget)})

    @router.get("/v1/usage/events", response_model=UsageEventsResponse, responses=error_responses(400))
    async def usage_events(tenant: CurrentTenant, start: From = None, end: To = None,
                           limit: Limit = DEFAULT_EVENTS_LIMIT, offset: Offset = 0) -> Response:
        """Billed replies of the period, newest first, ``limit`` of them after the first ``offset``."""
        events = tenant.usage_events(*days(start, end), limit=limit, offset=offset)
        return json_response(usage_events_payload(events, limit))

    @router.get("/v1/usage/monthly", response_model=MonthlyResponse, responses=error_responses())
    async def monthly(tenant: CurrentTenant, months: Months = 12) -> Response:
        """Cost per provider for the last ``months`` (default 12) calendar months, oldest first, zeros included."""
        return json_response(monthly_payload(tenant.usage_monthly(months)))

    return router


"""GET /v1/operator/breakers: the circuit breakers of the serving process, and their recent transitions.

What a platform person on call asks first during a vendor incident: which
providers does this gateway skip right now, since when, until when, and how
did it get there. Breakers are an operator matter (they span every tenant),
so the route sits with the operator routes and their secret
(``routes_operator.py`` includes it). The states are this process's; the
transitions come from the database, so they include every gateway process
that wrote to it (``gatewayId`` tells them apart).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field
from starlette.responses import Response

from ..analytics import breaker_transitions
from ..gateway import Gateway
from ..governance.breaker import BreakerPolicy, BreakerState
from ..models import Timestamp
from .schemas import _Wire
from .wire import model_response

__all__ = ["DEFAULT_TRANSITIONS", "MAX_TRANSITIONS", "BreakerPolicyWire", "BreakerStateWire", "BreakerTransitionWire",
           "BreakersResponse", "breakers_payload", "build_router"]

DEFAULT_TRANSITIONS = 50
MAX_TRANSITIONS = 1000
State = Literal["closed", "open", "half_open"]
Limit = Annotated[int, Query(ge=1, le=MAX_TRANSITIONS,
                             description=f"The most recent transitions to list (at most {MAX_TRANSITIONS}).")]


class BreakerPolicyWire(_Wire):
    failure_threshold: int | None = Field(description="consecutive failures that open a circuit; null: off")
    failure_rate: float | None = Field(description="failed share of the window's calls that opens a circuit; null: off")
    window_seconds: float
    minimum_calls: int
    cooldown_seconds: float
    half_open_probes: int
    when_all_open: Literal["try_anyway", "fail_fast"]
    count_rate_limits: bool


class BreakerStateWire(_Wire):
    provider: str
    state: State
    since: Timestamp
    failure_rate: float | None = Field(description="failed share of the calls in the window; null without calls")
    calls_in_window: int
    failures_in_window: int
    consecutive_failures: int
    cooldown_ends_at: Timestamp | None = Field(description="when an open circuit lets its first probe through")


class BreakerTransitionWire(_Wire):
    gateway_id: str
    seq: int
    provider: str
    from_state: State
    to_state: State
    reason: str = Field(examples=["consecutive_failures"])
    consecutive_failures: int
    window_calls: int
    window_failures: int
    created_at: Timestamp


class BreakersResponse(_Wire):
    policy: BreakerPolicyWire | None = Field(description="null: this gateway runs without circuit breakers")
    breakers: list[BreakerStateWire]
    transitions: list[BreakerTransitionWire] = Field(description="the most recent ones, oldest first")


def _policy(policy: BreakerPolicy) -> BreakerPolicyWire:
    return BreakerPolicyWire(failure_threshold=policy.failure_threshold, failure_rate=policy.failure_rate,
                             window_seconds=policy.window_s, minimum_calls=policy.minimum_calls,
                             cooldown_seconds=policy.cooldown_s, half_open_probes=policy.half_open_probes,
                             when_all_open=policy.when_all_open, count_rate_limits=policy.count_rate_limits)


def _state(view: BreakerState) -> BreakerStateWire:
    return BreakerStateWire(provider=view.provider, state=view.state, since=view.since, failure_rate=view.failure_rate,
                            calls_in_window=view.calls_in_window, failures_in_window=view.failures_in_window,
                            consecutive_failures=view.consecutive_failures, cooldown_ends_at=view.cooldown_ends_at)


def breakers_payload(gw: Gateway, limit: int = DEFAULT_TRANSITIONS) -> BreakersResponse:
    """The answer of the route (also what a notebook's health panel shows of a local service)."""
    rows: list[dict[str, Any]] = breaker_transitions(gw, limit=limit).to_dict("records")
    return BreakersResponse(policy=None if gw.breaker is None else _policy(gw.breaker),
                            breakers=[_state(v) for v in gw.breaker_states().values()],
                            transitions=[BreakerTransitionWire.model_validate(
                                {**row, "created_at": row["created_at"].to_pydatetime()}) for row in rows])


def build_router(gw: Gateway, responses: dict[int | str, dict[str, Any]]) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/operator/breakers", response_model=BreakersResponse, responses=responses)
    async def breakers(limit: Limit = DEFAULT_TRANSITIONS) -> Response:
        """Every provider's circuit breaker in this process, and the ``limit`` latest transitions of any process."""
        return model_response(breakers_payload(gw, limit))

    return router

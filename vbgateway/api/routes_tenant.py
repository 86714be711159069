"""GET /v1/me and the agent endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.routing import APIRoute
from starlette.responses import Response

from ..gateway import Gateway
from ..models import AgentPatch, AgentSpec
from .envelope import json_response
from .routing import CurrentTenant, error_responses
from .schemas import AgentEnvelope, AgentList, MeResponse
from .wire import budget_payload, me_governance, me_payload, model_response

__all__ = ["build_router"]

AgentId = Annotated[str, Path(alias="agentId")]


def build_router(gw: Gateway, route_class: type[APIRoute]) -> APIRouter:
    router = APIRouter(route_class=route_class, tags=["tenant and agents"])

    @router.get("/v1/me", response_model=MeResponse, responses=error_responses())
    async def me(tenant: CurrentTenant) -> Response:
        """The key's tenant, the price per 1,000 tokens of every provider, the key's scopes, the rate limits
        and the tenant's budget this month."""
        return json_response({**me_payload(gw, tenant.tenant.model_dump(by_alias=True, mode="json")),
                              **me_governance(gw, tenant), "budget": budget_payload(tenant.budget())})

    @router.get("/v1/agents", response_model=AgentList, responses=error_responses())
    async def list_agents(tenant: CurrentTenant) -> Response:
        """The tenant's agents, newest first."""
        return model_response(AgentList(agents=tenant.list_agents()[::-1]))  # the store lists them oldest first

    @router.post("/v1/agents", status_code=201, response_model=AgentEnvelope, responses=error_responses(400))
    async def create_agent(body: AgentSpec, tenant: CurrentTenant) -> Response:
        """Create an agent; ``fallbackProvider`` ``null`` or ``"none"`` means no fallback."""
        return model_response(AgentEnvelope(agent=tenant.create_agent(body)), 201)

    @router.get("/v1/agents/{agentId}", response_model=AgentEnvelope, responses=error_responses(404))
    async def get_agent(agent_id: AgentId, tenant: CurrentTenant) -> Response:
        return model_response(AgentEnvelope(agent=tenant.get_agent(agent_id)))

    @router.put("/v1/agents/{agentId}", response_model=AgentEnvelope, responses=error_responses(400, 404))
    async def update_agent(agent_id: AgentId, body: AgentPatch, tenant: CurrentTenant) -> Response:
        """Partial update: only the fields given change; ``fallbackProvider: null`` removes the fallback."""
        return model_response(AgentEnvelope(agent=tenant.update_agent(agent_id, body)))

    return router

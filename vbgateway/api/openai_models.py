"""Which agent a chat completion's ``model`` names: an agent id, or ``agent:<name>``.

Ids resolve through the gateway's agent cache. Names need the tenant's list
of agents, a DuckDB query of about 2 ms: too much for every request of a
door whose overhead is measured in milliseconds, so ``AgentNames`` keeps each
tenant's names for ``NAMES_TTL_S`` seconds of the gateway's clock. The rule
a client sees stays simple:

- a name found is checked against the agent as it is now (a rename in this
  process shows at once);
- a name not found is looked up again before it is refused (an agent just
  created is found at once);
- a name that another agent has just taken too is refused as ambiguous
  once the tenant's names are read again, within ``NAMES_TTL_S``.
"""

from __future__ import annotations

from collections import defaultdict

from ..errors import AgentNotFoundError, ValidationError
from ..gateway import Gateway
from ..models import Agent

__all__ = ["AGENT_PREFIX", "NAMES_TTL_S", "AgentNames"]

AGENT_PREFIX = "agent:"
NAMES_TTL_S = 2.0


class AgentNames:
    """Resolves ``model`` to one of a tenant's agents (404 ``model_not_found``, 400 ``model_ambiguous``)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway
        self._names: dict[str, tuple[float, dict[str, list[str]]]] = {}  # tenant -> (read at, name -> ids)

    def resolve(self, tenant_id: str, model: str) -> Agent:
        if model.startswith(AGENT_PREFIX):
            agent = self._by_name(tenant_id, model[len(AGENT_PREFIX):])
        else:
            agent = self._gw.agent_for(tenant_id, model)
        if agent is None:
            raise AgentNotFoundError(f"the model {model[:100]!r} does not exist: name an agent by its id or as "
                                     f"agent:<name> (GET /v1/models lists them)",
                                     details={"field": "model", "openaiCode": "model_not_found",
                                              "model": model[:100]})
        return agent

    def _by_name(self, tenant_id: str, name: str) -> Agent | None:
        now = self._gw.clock.monotonic()
        cached = self._names.get(tenant_id)
        fresh = cached is not None and now - cached[0] < NAMES_TTL_S
        ids = cached[1].get(name, []) if cached is not None and fresh else []
        agents = [agent for agent in (self._gw.agent_for(tenant_id, i) for i in ids) if agent and agent.name == name]
        if len(agents) != len(ids) or not agents:  # unknown here, or renamed since: read the names again
            agents = self._read(tenant_id, now).get(name, [])
        if len(agents) > 1:
            found = sorted(agent.id for agent in agents)
            raise ValidationError(f"{len(found)} agents are named {name[:100]!r}: name one by its id "
                                  f"({', '.join(found[:10])})",
                                  details={"field": "model", "openaiCode": "model_ambiguous", "agentIds": found[:10]})
        return agents[0] if agents else None

    def _read(self, tenant_id: str, now: float) -> dict[str, list[Agent]]:
        by_name: dict[str, list[Agent]] = defaultdict(list)
        for agent in self._gw.store.list_agents(tenant_id):
            by_name[agent.name].append(agent)
            self._gw.remember_agent(agent)
        self._names[tenant_id] = (now, {name: [a.id for a in agents] for name, agents in by_name.items()})
        return by_name

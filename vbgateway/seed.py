"""Demo data: two tenants and three agents, created once.

Seeding an already seeded database changes nothing, so ``make demo`` can run
any number of times against the same file.
"""

from __future__ import annotations

from dataclasses import dataclass

from .gateway import Gateway
from .models import Agent, Tenant

__all__ = ["DEMO_AGENTS", "SeedResult", "seed_demo"]

DEMO_AGENTS: dict[str, list[dict[str, object]]] = {
    "Acme Corporation": [
        {"name": "Support Assistant", "primary_provider": "vendorA", "fallback_provider": "vendorB",
         "system_prompt": "You are Acme's friendly support assistant. Answer briefly and precisely.",
         "enabled_tools": ["InvoiceLookup", "OrderStatus"]},
        {"name": "Sales Concierge", "primary_provider": "vendorB", "fallback_provider": "vendorA",
         "system_prompt": "You help prospective Acme customers choose the right plan.",
         "enabled_tools": []},
    ],
    "GlobalTech Industries": [
        {"name": "IT Helpdesk", "primary_provider": "vendorB", "fallback_provider": None,
         "system_prompt": "You are GlobalTech's IT helpdesk. Walk users through fixes step by step.",
         "enabled_tools": ["TicketCreate"]},
    ],
}


@dataclass
class SeedResult:
    created: bool
    tenants: list[Tenant]
    agents: list[Agent]
    api_keys: dict[str, str]  # tenant name -> key, only when just created


def seed_demo(gw: Gateway) -> SeedResult:
    """Create the demo tenants and agents unless a tenant of that name exists."""
    existing = {t.name: t for t in gw.list_tenants()}
    if all(name in existing for name in DEMO_AGENTS):
        tenants = [existing[name] for name in DEMO_AGENTS]
        agents = [a for t in tenants for a in gw.as_tenant(t.id).list_agents()]
        return SeedResult(False, tenants, agents, {})
    tenants, agents, keys = [], [], {}
    for name, specs in DEMO_AGENTS.items():
        if name in existing:
            tenants.append(existing[name])
            continue
        tenant, key = gw.create_tenant(name)
        client = gw.as_tenant(tenant.id)
        tenants.append(tenant)
        keys[name] = key
        agents.extend(client.create_agent(spec) for spec in specs)
    return SeedResult(True, tenants, agents, keys)

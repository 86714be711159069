"""The tenants and agents synthetic usage belongs to, made through the gateway like any others.

Kept apart from the generator because it is a different kind of work: a few
dozen durable commits through the real gateway (so the tenants have keys and
cached agents), not millions of rows in bulk; benchmarks time it separately.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..tenant import TenantClient
from .loader import generate
from .spec import SyntheticResult, SyntheticSpec

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["create_tenants", "populate"]


def create_tenants(gw: Gateway, spec: SyntheticSpec) -> tuple[list[str], list[list[str]]]:
    """``spec.tenants`` tenants and their agents, for ``generate``: (tenant ids, agent ids per tenant).

    One at a time, through the gateway, so they are real ones (keys, cached agents); each is its
    own durable commit, which is why this is slow next to ``generate`` and timed apart from it.
    """
    spec.validate()
    tenant_ids, agent_ids = [], []
    for t in range(spec.tenants):
        tenant, _ = gw.create_tenant(f"Synthetic {spec.tag} {t:03d}")
        client = TenantClient(gw, tenant)  # the tenant just created: as_tenant would look it up again
        agents = [client.create_agent(name=f"Agent {a + 1}", primary_provider="vendorA", fallback_provider="vendorB",
                                      system_prompt="You are a synthetic agent.").id
                  for a in range(spec.agents_per_tenant)]
        tenant_ids.append(tenant.id)
        agent_ids.append(agents)
    return tenant_ids, agent_ids


def populate(gw: Gateway, spec: SyntheticSpec) -> SyntheticResult:
    """Create ``spec.tenants`` tenants with their agents, then generate their usage."""
    spec.validate()
    tenant_ids, agent_ids = create_tenants(gw, spec)
    return generate(gw, spec, tenant_ids, agent_ids)

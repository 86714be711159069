"""A month of history for the demo tenants, so ``make demo`` has reports worth reading.

The demo tenants of ``seed.py`` get 30 days of simulated traffic (about
20,000 messages, with a vendorA outage on day 12 that the Support Assistant
rides out on vendorB) in the same database the chat demo uses. It ends at
the current UTC midnight, so the "last 30 days" of a report are populated.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..clock import SystemClock
from ..gateway import Gateway
from ..seed import DEMO_AGENTS, seed_demo
from .results import SimulationResult
from .runner import Progress, simulate
from .scenario import AgentPlan, Incident, Scenario, TenantPlan, Traffic

__all__ = ["DEMO_SCALE", "demo_scenario", "simulate_demo_month"]

DEMO_SCALE = {"Acme Corporation": 1.2, "GlobalTech Industries": 0.8}


def demo_scenario(start: datetime, days: int = 30, sessions_per_hour: float = 8.0) -> Scenario:
    """The demo tenants' agents (as seeded), busy weekdays, and one 90-minute vendorA outage."""
    tenants = []
    for name, specs in DEMO_AGENTS.items():
        agents = tuple(AgentPlan(name=str(s["name"]), primary=str(s["primary_provider"]),
                                 fallback=None if s["fallback_provider"] is None else str(s["fallback_provider"]),
                                 tools=tuple(s.get("enabled_tools", ()))) for s in specs)  # type: ignore[arg-type]
        tenants.append(TenantPlan(name=name, agents=agents, scale=DEMO_SCALE.get(name, 1.0)))
    incidents: tuple[Incident, ...] = ()
    if days > 12:
        incidents = (Incident(vendor="vendorA", kind="outage", start=timedelta(days=11, hours=14),
                              end=timedelta(days=11, hours=15, minutes=30), label="vendorA outage"),)
    return Scenario(name="demo-month", description="30 days of the demo tenants", start=start,
                    duration=timedelta(days=days), seed=2026, tenants=tuple(tenants),
                    traffic=Traffic(sessions_per_hour=sessions_per_hour), incidents=incidents)


def simulate_demo_month(db_path: str | Path, *, days: int = 30, start: datetime | None = None,
                        progress: Progress | None = None, sessions_per_hour: float = 8.0) -> SimulationResult:
    """Seed the demo tenants if needed, then simulate ``days`` of their traffic into ``db_path``."""
    with Gateway.open(db_path) as gw:
        seed_demo(gw)
    if start is None:
        today = SystemClock().now().astimezone(UTC)
        start = datetime(today.year, today.month, today.day, tzinfo=UTC) - timedelta(days=days)
    return simulate(demo_scenario(start, days, sessions_per_hour), db_path, progress=progress)

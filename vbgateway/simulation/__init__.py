"""The simulation workbench: seeded traffic and vendor incidents through the real gateway on virtual time.

``simulate(load_scenario("vendor_a_outage"), db="data/sim.duckdb")`` (an example by name, or a file path)
returns a ``SimulationResult``; ``compare_policies`` replays one scenario under
several retry and circuit breaker policies; ``reprice`` answers "what if the prices were these".

Names are loaded on first use: a gateway instance's process imports this
package too, and needs none of the analysis side (pandas, some 50 MB each).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .compare import Comparison, GatewayPolicy, breaker_grid, compare_policies, policy_grid
    from .demo import demo_scenario, simulate_demo_month
    from .digest import table_digest
    from .results import SimulationResult
    from .runner import simulate
    from .scenario import Incident, Scenario, ScenarioError, load_scenario
    from .whatif import reprice

_MODULE_OF = {
    "Comparison": "compare", "GatewayPolicy": "compare", "breaker_grid": "compare", "compare_policies": "compare",
    "policy_grid": "compare",
    "demo_scenario": "demo", "simulate_demo_month": "demo",
    "table_digest": "digest",
    "SimulationResult": "results",
    "simulate": "runner",
    "Incident": "scenario", "Scenario": "scenario", "ScenarioError": "scenario", "load_scenario": "scenario",
    "reprice": "whatif",
}
__all__ = ["Comparison", "GatewayPolicy", "Incident", "Scenario", "ScenarioError", "SimulationResult", "breaker_grid",
           "compare_policies", "demo_scenario", "load_scenario", "policy_grid", "reprice", "simulate",
           "simulate_demo_month", "table_digest"]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""The simulation workbench: seeded traffic and vendor incidents through the real gateway on virtual time.

``simulate(load_scenario("data/scenarios/vendor_a_outage.yaml"), db="data/sim.duckdb")``
returns a ``SimulationResult``; ``compare_policies`` replays one scenario under
several retry policies; ``reprice`` answers "what if the prices were these".
"""

from .compare import Comparison, compare_policies, policy_grid
from .demo import demo_scenario, simulate_demo_month
from .results import SimulationResult, table_digest
from .runner import simulate
from .scenario import Incident, Scenario, ScenarioError, load_scenario
from .whatif import reprice

__all__ = [
    "Comparison",
    "Incident",
    "Scenario",
    "ScenarioError",
    "SimulationResult",
    "compare_policies",
    "demo_scenario",
    "load_scenario",
    "policy_grid",
    "reprice",
    "simulate",
    "simulate_demo_month",
    "table_digest",
]

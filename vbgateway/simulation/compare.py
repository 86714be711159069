"""Several retry policies, one seeded traffic: which one should ship?

Every policy replays the same scenario: the workload depends only on the
seed, so sessions, moments and user messages are identical across runs
(``Comparison.traffic_identical`` checks the digests), while outcomes,
latency and cost differ with the policy. Vendors are re-seeded per run too,
so a difference between two columns is the policy's doing.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..reliability import RetryPolicy
from .results import SimulationResult
from .runner import Progress, simulate
from .scenario import Scenario, load_scenario

__all__ = ["Comparison", "compare_policies", "policy_grid"]

COLUMNS = ("policy", "attempts", "timeout_s", "fallback", "messages", "replies", "success_rate", "fallback_rate",
           "attempts_per_reply", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "cost_usd",
           "cost_per_1k_replies_usd")


def policy_grid(attempts: Sequence[int] = (1, 2, 3), fallback: Sequence[bool] = (True, False),
                timeout_s: Sequence[float] = (1.0, 2.0), base: RetryPolicy | None = None) -> dict[str, RetryPolicy]:
    """Every combination, named like ``3x 2s fallback``; other fields come from ``base``."""
    base = base or RetryPolicy()
    grid = {}
    for n, fb, t in itertools.product(attempts, fallback, timeout_s):
        grid[f"{n}x {t:g}s {'fallback' if fb else 'no fallback'}"] = base.model_copy(
            update={"attempts": n, "fallback": fb, "timeout_s": float(t)})
    return grid


@dataclass
class Comparison:
    """One result per policy, and the side-by-side table."""

    results: dict[str, SimulationResult]
    table: pd.DataFrame

    def traffic_identical(self) -> bool:
        return len({r.traffic_digest for r in self.results.values()}) <= 1

    def timelines(self, freq: str = "5min") -> pd.DataFrame:
        """Every policy's timeline, stacked, with a ``policy`` column (for faceted charts)."""
        frames = [r.timeline(freq).assign(policy=name) for name, r in self.results.items()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "policy"


def compare_policies(scenario: Scenario | str | Path | dict[str, Any],
                     policies: Mapping[str, RetryPolicy] | None = None, *, db_dir: str | Path | None = None,
                     progress: Progress | None = None, **options: Any) -> Comparison:
    """Run ``scenario`` once per policy (``policy_grid()`` by default) and tabulate the outcomes.

    With ``db_dir`` each run keeps its database (``<db_dir>/<policy>.duckdb``);
    otherwise runs are in memory. ``options`` go to ``simulate``; with
    ``cluster=`` every instance of every policy is one Dask task, all
    submitted at once (``cluster.py``).
    """
    scenario = load_scenario(scenario)
    policies = dict(policies) if policies is not None else policy_grid()
    dbs: dict[str, str | Path] = {}
    for name in policies:
        dbs[name] = ":memory:"
        if db_dir is not None:
            Path(db_dir).mkdir(parents=True, exist_ok=True)
            dbs[name] = Path(db_dir) / f"{_slug(name)}.duckdb"
    results: dict[str, SimulationResult] = {}
    if options.get("cluster") is not None:
        from .cluster import simulate_on_cluster

        cluster = options.pop("cluster")
        runs = simulate_on_cluster([(scenario.with_policy(policy), dbs[name]) for name, policy in policies.items()],
                                   cluster, progress=progress, **options)
        results = dict(zip(policies, runs, strict=True))
    for name, policy in policies.items():
        if name not in results:
            results[name] = simulate(scenario, dbs[name], policy=policy, progress=progress, **options)
    rows = []
    for name, result in results.items():
        summary, policy = result.summary(), result.scenario.policy
        rows.append({**{k: summary.get(k) for k in COLUMNS}, "policy": name, "attempts": policy.attempts,
                     "timeout_s": policy.timeout_s, "fallback": policy.fallback})
    return Comparison(results, pd.DataFrame(rows, columns=list(COLUMNS)))

"""Several gateway policies, one seeded traffic: which one should ship?

Every policy replays the same scenario: the workload depends only on the
seed, so sessions, moments and user messages are identical across runs
(``Comparison.traffic_identical`` checks the digests), while outcomes,
latency and cost differ with the policy. Vendors are re-seeded per run too,
so a difference between two columns is the policy's doing.

A policy is a ``RetryPolicy`` (the scenario's breaker stays), a
``BreakerPolicy`` (the scenario's retry policy stays), or a
``GatewayPolicy`` naming both (``breaker=None``: no breaker). Each gateway
instance of a run has its own breakers, as each gateway process does.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict

from ..governance.breaker import BreakerPolicy
from ..reliability import RetryPolicy
from .results import SimulationResult
from .runner import Progress, simulate
from .scenario import Scenario, load_scenario

__all__ = ["Comparison", "GatewayPolicy", "breaker_grid", "compare_policies", "policy_grid"]

COLUMNS = ("policy", "attempts", "timeout_s", "fallback", "breaker", "messages", "replies", "success_rate",
           "fallback_rate", "attempts_per_reply", "wasted_calls", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
           "cost_usd", "cost_per_1k_replies_usd")


class GatewayPolicy(BaseModel):
    """A retry policy and a circuit breaker policy (or none), compared together."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy | None = None


Policy = RetryPolicy | BreakerPolicy | GatewayPolicy


def policy_grid(attempts: Sequence[int] = (1, 2, 3), fallback: Sequence[bool] = (True, False),
                timeout_s: Sequence[float] = (1.0, 2.0), base: RetryPolicy | None = None) -> dict[str, RetryPolicy]:
    """Every combination, named like ``3x 2s fallback``; other fields come from ``base``."""
    base = base or RetryPolicy()
    grid = {}
    for n, fb, t in itertools.product(attempts, fallback, timeout_s):
        grid[f"{n}x {t:g}s {'fallback' if fb else 'no fallback'}"] = base.model_copy(
            update={"attempts": n, "fallback": fb, "timeout_s": float(t)})
    return grid


def breaker_grid(cooldown_s: Sequence[float] = (10.0, 30.0, 60.0), failure_threshold: Sequence[int] = (3, 5),
                 retry: RetryPolicy | None = None, base: BreakerPolicy | None = None) -> dict[str, GatewayPolicy]:
    """No breaker, then every combination, named like ``breaker 5x 30s``; other fields come from ``base``."""
    retry, base = retry or RetryPolicy(), base or BreakerPolicy()
    grid = {"no breaker": GatewayPolicy(retry=retry, breaker=None)}
    for n, cooldown in itertools.product(failure_threshold, cooldown_s):
        grid[f"breaker {n}x {cooldown:g}s"] = GatewayPolicy(retry=retry, breaker=base.model_copy(
            update={"failure_threshold": n, "cooldown_s": float(cooldown)}))
    return grid


def _apply(scenario: Scenario, policy: Policy) -> Scenario:
    if isinstance(policy, RetryPolicy):
        return scenario.model_copy(update={"policy": policy})
    if isinstance(policy, BreakerPolicy):
        return scenario.model_copy(update={"breaker": policy})
    if isinstance(policy, GatewayPolicy):
        return scenario.model_copy(update={"policy": policy.retry, "breaker": policy.breaker})
    raise TypeError(f"a policy is a RetryPolicy, a BreakerPolicy or a GatewayPolicy, not {type(policy).__name__}")


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
                     policies: Mapping[str, Policy] | None = None, *, db_dir: str | Path | None = None,
                     progress: Progress | None = None, **options: Any) -> Comparison:
    """Run ``scenario`` once per policy (``policy_grid()`` by default) and tabulate the outcomes.

    With ``db_dir`` each run keeps its database (``<db_dir>/<policy>.duckdb``);
    otherwise runs are in memory. ``options`` go to ``simulate``; with
    ``cluster=`` every instance of every policy is one Dask task, all
    submitted at once (``cluster.py``).
    """
    scenario = load_scenario(scenario)
    chosen: dict[str, Policy] = dict(policies) if policies is not None else dict(policy_grid())
    runs = {name: _apply(scenario, policy) for name, policy in chosen.items()}  # bad policies fail before any run
    dbs: dict[str, str | Path] = {}
    for name in runs:
        dbs[name] = ":memory:"
        if db_dir is not None:
            Path(db_dir).mkdir(parents=True, exist_ok=True)
            dbs[name] = Path(db_dir) / f"{_slug(name)}.duckdb"
    results: dict[str, SimulationResult] = {}
    if options.get("cluster") is not None:
        from .cluster import simulate_on_cluster

        cluster = options.pop("cluster")
        done = simulate_on_cluster([(run, dbs[name]) for name, run in runs.items()], cluster, progress=progress,
                                   **options)
        results = dict(zip(runs, done, strict=True))
    for name, run in runs.items():
        if name not in results:
            results[name] = simulate(run, dbs[name], progress=progress, **options)
    rows = []
    for name, result in results.items():
        summary, policy, breaker = result.summary(), result.scenario.policy, result.scenario.breaker
        rows.append({**{k: summary.get(k) for k in COLUMNS}, "policy": name, "attempts": policy.attempts,
                     "timeout_s": policy.timeout_s, "fallback": policy.fallback,
                     "breaker": "none" if breaker is None else breaker.label()})
    return Comparison(results, pd.DataFrame(rows, columns=list(COLUMNS)))

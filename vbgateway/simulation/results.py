"""What a simulation produced: per-message rows, and the summaries read from them.

The rows are the customers' view (did I get an answer, how long did it
take, what did it cost); the database holds the gateway's view (every
provider call, every usage event). Summaries are computed from the rows so
they also exist for in-memory runs; ``table_digest`` fingerprints the
database so a test can prove two seeded runs wrote the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .digest import table_digest
from .scenario import Scenario

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["SimulationResult", "policy_label"]

_UNIT = Decimal(1).scaleb(-10)


def _pct(values: pd.Series, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


@dataclass
class SimulationResult:
    """Rows (one per customer message) and everything derived from them."""

    scenario: Scenario
    rows: pd.DataFrame
    db: str | None
    traffic_digest: str
    tenant_ids: dict[str, str]
    agent_vendors: dict[str, tuple[str, str | None]]
    wall_s: float
    virtual_s: float
    gateway: Gateway | None = None
    database_digest: str | None = None
    worker_peak_rss_mb: float = 0.0  # sum of the peak memory of the processes that ran gateway instances (0: none)
    cluster: dict[str, Any] | None = None  # run on Dask: scheduler, dashboard, workers, tasks, each worker's peak MB
    _summary: dict[str, Any] | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.gateway is not None:
            self.database_digest = table_digest(self.gateway)
            self.gateway.close()
            self.gateway = None

    # ------------------------------------------------------------------ summaries
    def summary(self) -> dict[str, Any]:
        """Success, fallback, attempts, latency percentiles, cost and speed of the run."""
        if self._summary is None:
            rows = self.rows
            ok = rows[rows.outcome == "ok"]
            replies, messages = len(ok), len(rows)
            cost = Decimal(int(rows.cost_units.sum())) * _UNIT
            self._summary = {
                "scenario": self.scenario.name,
                "policy": policy_label(self.scenario),
                "messages": messages,
                "replies": replies,
                "failed": messages - replies,
                "success_rate": replies / messages if messages else None,
                "fallback_rate": float(ok.fallback_used.mean()) if replies else None,
                "attempts_per_reply": float(rows.attempts.sum()) / replies if replies else None,
                "wasted_calls": int(rows.attempts.sum()) - replies,  # provider calls that gave no reply
                "latency_p50_ms": _pct(ok.latency_ms, 50),
                "latency_p95_ms": _pct(ok.latency_ms, 95),
                "latency_p99_ms": _pct(ok.latency_ms, 99),
                "cost_usd": cost,
                "cost_per_1k_replies_usd": (cost * 1000 / replies).quantize(_UNIT) if replies else None,
                "client_retries": int(rows.client_retry.sum()),
                "voice_messages": int((rows.channel == "voice").sum()),
                "wall_s": round(self.wall_s, 3),
                "virtual_s": round(self.virtual_s, 3),
                "sim_msgs_per_wall_s": round(messages / self.wall_s, 1) if self.wall_s else None,
                "virtual_s_per_wall_s": round(self.virtual_s / self.wall_s, 1) if self.wall_s else None,
            }
        return dict(self._summary)

    def vendor_load(self) -> pd.DataFrame:
        """Per vendor: provider calls (as primary and as fallback), replies served, share of replies."""
        rows = self.rows
        primary = rows.agent.map({k: v[0] for k, v in self.agent_vendors.items()}).astype(object)
        fallback = rows.agent.map({k: v[1] for k, v in self.agent_vendors.items()}).astype(object)
        replies = int((rows.outcome == "ok").sum())
        out = []
        for vendor in sorted(set(primary.dropna()) | set(fallback.dropna()) | set(rows.vendor_used.dropna())):
            as_primary = int(rows.primary_calls[primary == vendor].sum())
            as_fallback = int((rows.attempts - rows.primary_calls)[fallback == vendor].sum())
            served = int((rows.vendor_used == vendor).sum())
            out.append({"vendor": vendor, "calls": as_primary + as_fallback, "calls_as_primary": as_primary,
                        "calls_as_fallback": as_fallback, "replies": served,
                        "reply_share": served / replies if replies else 0.0})
        return pd.DataFrame(out)

    def timeline(self, freq: str = "1min") -> pd.DataFrame:
        """Per minute (or ``freq``): messages, replies, failures, fallbacks, replies per vendor, p95 latency."""
        rows = self.rows
        if rows.empty:
            return pd.DataFrame(columns=["minute", "messages", "replies", "failed", "fallback", "latency_p95_ms"])
        minute = rows.sent_at.dt.floor(freq)
        ok = rows.outcome == "ok"
        frame = pd.DataFrame({"minute": minute, "ok": ok, "fallback": rows.fallback_used,
                              "latency": rows.latency_ms.where(ok)})
        grouped = frame.groupby("minute")
        table = pd.DataFrame({"messages": grouped.size(), "replies": grouped.ok.sum(),
                              "fallback": grouped.fallback.sum(),
                              "latency_p95_ms": grouped.latency.quantile(0.95)})
        table["failed"] = table.messages - table.replies
        by_vendor = pd.crosstab(minute[ok], rows.vendor_used[ok].astype(str))
        for vendor in self.rows.vendor_used.cat.categories:
            table[f"replies_{vendor}"] = by_vendor.get(vendor, 0)
        table = table.fillna({c: 0 for c in table.columns if c.startswith("replies_")})
        return table.reset_index()

    def by_tenant(self) -> pd.DataFrame:
        """Messages, replies, success rate and exact cost per tenant."""
        rows = self.rows
        grouped = rows.groupby("tenant", observed=True)
        table = pd.DataFrame({"messages": grouped.size(), "replies": grouped.outcome.apply(lambda s: (s == "ok").sum()),
                              "cost_units": grouped.cost_units.sum()})
        table["success_rate"] = table.replies / table.messages
        table["cost_usd"] = [Decimal(int(u)) * _UNIT for u in table.cost_units]
        return table.drop(columns="cost_units").reset_index()

    # ------------------------------------------------------------------ identity and output
    def digest(self) -> str:
        """SHA-256 of the rows (every column) and, when known, of the database contents."""
        hashed = pd.util.hash_pandas_object(self.rows.drop(columns=["cost_usd"]), index=False).to_numpy()
        digest = hashlib.sha256(hashed.tobytes())
        digest.update((self.traffic_digest + (self.database_digest or "")).encode())
        return digest.hexdigest()

    def save(self, prefix: str | Path) -> tuple[Path, Path]:
        """Write ``<prefix>.messages.parquet`` and ``<prefix>.summary.json``; returns both paths."""
        base = Path(prefix)
        base.parent.mkdir(parents=True, exist_ok=True)
        rows_path, summary_path = Path(f"{base}.messages.parquet"), Path(f"{base}.summary.json")
        self.rows.to_parquet(rows_path, index=False)
        summary_path.write_text(json.dumps(self.summary(), default=str, indent=2) + "\n", encoding="utf-8")
        return rows_path, summary_path


def policy_label(scenario: Scenario) -> str:
    """A short name for a policy: ``3x 2s fallback`` (``+ breaker 5x/50% 30s`` with a circuit breaker)."""
    p = scenario.policy
    label = f"{p.attempts}x {p.timeout_s:g}s {'fallback' if p.fallback else 'no fallback'}"
    return label if scenario.breaker is None else f"{label} + {scenario.breaker.label()}"

"""The dashboard's arithmetic, apart from its widgets: periods, KPI changes, CSV export.

Plain functions of dates and analytics results, so they are tested without
widgets and reused by the notebook.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from ..analytics import MAX_EVENTS_LIMIT, Rollup
from ..client import HttpTenantClient
from ..governance.budget_values import Budget
from ..tenant import TenantClient

__all__ = ["PRESETS", "Kpi", "Period", "budget_shares", "export_events_csv", "kpis", "period_for", "previous_period"]

PRESETS = ("This month", "Last 7 days", "Last 30 days", "Custom")


@dataclass(frozen=True)
class Period:
    """UTC calendar days, both ends inclusive (as ``analytics`` takes them)."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def label(self) -> str:
        return f"{self.start:%Y-%m-%d} – {self.end:%Y-%m-%d}"


def period_for(preset: str, today: date, custom: tuple[date | None, date | None] = (None, None)) -> Period:
    """The days a preset covers; "Custom" takes the two dates (swapped if given backwards)."""
    if preset == "This month":
        return Period(today.replace(day=1), today)
    if preset == "Last 7 days":
        return Period(today - timedelta(days=6), today)
    if preset == "Last 30 days":
        return Period(today - timedelta(days=29), today)
    if preset == "Custom":
        start, end = custom[0] or today, custom[1] or today
        return Period(min(start, end), max(start, end))
    raise ValueError(f"unknown period preset {preset!r}; choose one of {', '.join(PRESETS)}")


def previous_period(period: Period) -> Period:
    """The same number of days right before, so a change compares like with like."""
    end = period.start - timedelta(days=1)
    return Period(end - timedelta(days=period.days - 1), end)


@dataclass(frozen=True)
class Kpi:
    label: str
    current: Decimal | int
    previous: Decimal | int
    money: bool = False


def kpis(current: Rollup, previous: Rollup) -> list[Kpi]:
    """The four tiles: spend, messages, sessions, tokens, each with the previous period's figure."""
    now, before = current.totals, previous.totals
    return [Kpi("Spend", now["cost_usd"], before["cost_usd"], money=True),
            Kpi("Messages", now["messages"], before["messages"]),
            Kpi("Sessions", now["sessions"], before["sessions"]),
            Kpi("Tokens", now["tokens_total"], before["tokens_total"])]


def budget_shares(budget: Budget) -> tuple[float, float]:
    """(spent, reserved) as shares of the monthly limit, for the gauge's two segments (together at most 1)."""
    limit = budget.monthly_usd
    spent = min(float(budget.spent_usd / limit), 1.0) if limit > 0 else 1.0
    reserved = min(float(budget.reserved_usd / limit), 1.0 - spent) if limit > 0 else 0.0
    return max(spent, 0.0), max(reserved, 0.0)


def export_events_csv(client: TenantClient | HttpTenantClient, period: Period, directory: str | Path) -> Path:
    """Write every usage event of the period (newest first) to ``directory`` and return the file."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"usage_{client.id}_{period.start:%Y%m%d}_{period.end:%Y%m%d}.csv"
    columns = ["id", "created_at", "session_id", "agent_id", "provider", "channel", "tokens_in", "tokens_out",
               "cost_usd", "request_id"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        offset = 0
        while True:
            page = client.usage_events(period.start, period.end, limit=MAX_EVENTS_LIMIT, offset=offset)
            for row in page[columns].itertuples(index=False):
                writer.writerow([v.isoformat() if hasattr(v, "isoformat") else v for v in row])
            if len(page) < MAX_EVENTS_LIMIT:
                return path
            offset += MAX_EVENTS_LIMIT

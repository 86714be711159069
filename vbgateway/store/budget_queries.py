"""The SQL of budgets: limits (``budgets``), recorded alerts (``budget_alerts``) and spend per month.

A mixin of ``Store``, like ``RecordQueries``. Limits are control-plane rows,
written straight to DuckDB; alerts are journaled with the reply that crossed
them (``BudgetAlertRow``) and written here only when a new limit finds its
thresholds already crossed, or when a simulation's merged rows are read
for them. Spend is read with pending replies applied first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from .tables import BUDGET_ALERTS, BUDGETS, BudgetAlertRow, BudgetRow

__all__ = ["BudgetQueries"]

_MONTH = "strftime(timezone('UTC', created_at), '%Y-%m')"
_SAVE_BUDGET = (f"INSERT INTO budgets ({', '.join(BUDGETS.column_names)}) "
                f"VALUES ({', '.join('?' * len(BUDGETS.columns))}) ON CONFLICT (tenant_id) DO UPDATE SET "
                "monthly_usd = excluded.monthly_usd, alert_at = excluded.alert_at, updated_at = excluded.updated_at")


class BudgetQueries:
    """Budgets in and out as rows of ``tables.py``."""

    # Provided by Store: atomic control-plane writes, and reads that first apply pending replies.
    _execute: Callable[[list[tuple[str, Sequence[Any]]]], None]
    query_rows: Callable[..., list[tuple[Any, ...]]]

    def budget_rows(self, tenant_id: str | None = None) -> list[BudgetRow]:
        where, params = ("WHERE tenant_id = ?", [tenant_id]) if tenant_id is not None else ("", [])
        rows = self.query_rows(f"SELECT {', '.join(BUDGETS.column_names)} FROM budgets {where} ORDER BY tenant_id",
                               params)
        return [BudgetRow(*row) for row in rows]

    def save_budget(self, row: BudgetRow, alerts: Sequence[BudgetAlertRow] = ()) -> None:
        """Create or change a tenant's limit (its ``created_at`` stays), with alerts it records at once."""
        self._execute([(_SAVE_BUDGET, row), *((BUDGET_ALERTS.insert_sql(or_ignore=True), alert) for alert in alerts)])

    def delete_budget(self, tenant_id: str) -> None:
        """No limit for the tenant any more; its recorded alerts stay (they happened)."""
        self._execute([("DELETE FROM budgets WHERE tenant_id = ?", [tenant_id])])

    def insert_budget_alerts(self, alerts: Sequence[BudgetAlertRow]) -> None:
        """Alerts found afterwards (a simulation's merged rows); one already recorded is kept as it was."""
        if alerts:
            self._execute([(BUDGET_ALERTS.insert_sql(or_ignore=True), alert) for alert in alerts])

    def spend_since(self, start: datetime) -> list[tuple[str, str, Decimal]]:
        """(tenant, month "2026-03", committed spend) of every month from ``start`` on."""
        rows = self.query_rows(f"SELECT tenant_id, {_MONTH} AS month, sum(cost_usd) FROM usage_events "
                               f"WHERE created_at >= ? GROUP BY ALL ORDER BY ALL", [start])
        return [(str(tenant), str(month), Decimal(amount)) for tenant, month, amount in rows]

    def tenant_spend_by_month(self, tenant_id: str, start: datetime, end: datetime) -> dict[str, Decimal]:
        """A tenant's committed spend per month of [start, end)."""
        rows = self.query_rows(f"SELECT {_MONTH} AS month, sum(cost_usd) FROM usage_events "
                               "WHERE tenant_id = ? AND created_at >= ? AND created_at < ? GROUP BY ALL",
                               [tenant_id, start, end])
        return {str(month): Decimal(amount) for month, amount in rows}

    def budget_alert_rows(self, since_month: str, tenant_id: str | None = None) -> list[BudgetAlertRow]:
        """Recorded alerts of ``since_month`` ("2026-03") and later months, oldest threshold first."""
        where, params = "WHERE month >= ?", [since_month]
        if tenant_id is not None:
            where, params = where + " AND tenant_id = ?", [since_month, tenant_id]
        rows = self.query_rows(f"SELECT {', '.join(BUDGET_ALERTS.column_names)} FROM budget_alerts {where} "
                               "ORDER BY tenant_id, month, threshold", params)
        return [BudgetAlertRow(*row) for row in rows]

    def first_crossings(self, tenant_id: str, start: datetime, end: datetime,
                        amount: Decimal) -> list[tuple[str, datetime, Decimal]]:
        """Per month of [start, end): the reply whose cost first brought the month's spend to ``amount``.

        (month, that reply's time, the spend with it), replies taken in the
        order they were made (time, then id): how the live ledger meets them.
        """
        rows = self.query_rows(f"""
            WITH running AS (
                SELECT {_MONTH} AS month, created_at,
                       sum(cost_usd) OVER (PARTITION BY {_MONTH} ORDER BY created_at, id
                                           ROWS UNBOUNDED PRECEDING) AS spent
                FROM usage_events WHERE tenant_id = ? AND created_at >= ? AND created_at < ?)
            SELECT month, arg_min(created_at, spent), min(spent) FROM running WHERE spent >= ?
            GROUP BY month ORDER BY month""", [tenant_id, start, end, amount])
        return [(str(month), at, Decimal(spent)) for month, at, spent in rows]

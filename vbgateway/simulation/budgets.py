"""Budgets in a simulation: a scenario's per-tenant limits, shared by the run's gateway instances.

A scenario's traffic is served by independent gateway instances (each its
own database and ledger; ``instances.py``), which cannot see each other's
spend while they run. So a tenant's budget is split before the run: each of
the ``n`` instances gets a fixed share,

    share = (limit - the most the tenant had already spent in any month of the run) / n, rounded down,

and enforces it exactly, month by month, with the live ledger
(``governance/budgets.py``). The shares add up to no more than what is left,
so the merged database can never show a month over the limit: the overspend
is zero by construction, whatever the traffic. The price is that a busy
instance may be refused while another still has budget left (up to ``n - 1``
shares go unused at worst); with one instance the whole remainder is used.

Alerts are not taken from the instances (each crosses thresholds of its
share, not of the budget): once the rows are merged, each threshold's
crossing is found in the merged usage events, in the order the replies
were made, and recorded once per month as the live gateway would have.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, field_validator

from ..errors import GatewayError
from ..governance.budget_values import DEFAULT_ALERT_AT, month_bounds, parse_alert_at, parse_monthly_usd
from ..store.tables import BudgetAlertRow

if TYPE_CHECKING:
    from ..gateway import Gateway
    from ..store import Store
    from .scenario import Scenario

__all__ = ["BudgetPlan", "apply_shares", "instance_shares", "record_run_alerts", "run_months", "set_scenario_budgets"]

_SHARE_QUANTUM = Decimal("1E-10")  # the store's money


class BudgetPlan(BaseModel):
    """A tenant's monthly budget in a scenario: ``monthly_usd`` (a number or a decimal string) and ``alert_at``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    monthly_usd: Decimal
    alert_at: tuple[Decimal, ...] = DEFAULT_ALERT_AT

    @field_validator("monthly_usd", mode="before")
    @classmethod
    def _limit(cls, value: Any) -> Decimal:
        try:  # a YAML number arrives as a float: taken at its shortest repr (12.5 is 12.5)
            return parse_monthly_usd(repr(value) if isinstance(value, float) else value)
        except GatewayError as exc:
            raise ValueError(exc.message) from None

    @field_validator("alert_at", mode="before")
    @classmethod
    def _thresholds(cls, value: Any) -> tuple[Decimal, ...]:
        try:
            return parse_alert_at(value)
        except GatewayError as exc:
            raise ValueError(exc.message) from None


def run_months(scenario: Scenario) -> tuple[datetime, datetime]:
    """[first instant of the scenario's first month, end of its last month): the months its budgets govern."""
    return month_bounds(scenario.start)[0], month_bounds(scenario.stop)[1]


def set_scenario_budgets(gw: Gateway, scenario: Scenario) -> None:
    """Give the scenario's tenants their budgets in the target database (found by name, as the run finds them)."""
    by_name = {tenant.name: tenant.id for tenant in gw.list_tenants()}
    for plan in scenario.tenant_plans():
        if plan.budget is not None:
            gw.set_budget(by_name[plan.name], plan.budget.monthly_usd, alert_at=plan.budget.alert_at)


def _budgeted_tenants(store: Store, scenario: Scenario) -> dict[str, tuple[Decimal, tuple[Decimal, ...]]]:
    """tenant id -> (monthly_usd, alert_at) of the scenario's tenants that have a budget in the target."""
    names = {plan.name for plan in scenario.tenant_plans()}
    ids = {tenant.id for tenant in store.list_tenants() if tenant.name in names}
    return {row.tenant_id: (Decimal(row.monthly_usd), tuple(Decimal(t) for t in row.alert_at))
            for row in store.budget_rows() if row.tenant_id in ids}


def instance_shares(store: Store, scenario: Scenario) -> dict[str, str]:
    """tenant id -> each instance's monthly limit (a decimal string: plain data for another process)."""
    start, end = run_months(scenario)
    shares = {}
    for tenant_id, (limit, _) in _budgeted_tenants(store, scenario).items():
        spent_before = max(store.tenant_spend_by_month(tenant_id, start, end).values(), default=Decimal(0))
        left = max(limit - spent_before, Decimal(0))
        shares[tenant_id] = str((left / scenario.gateways).quantize(_SHARE_QUANTUM, rounding=ROUND_DOWN))
    return shares


def apply_shares(gw: Gateway, shares: dict[str, str]) -> None:
    """Give an instance's gateway its shares (in memory only: the instance's database keeps no budget)."""
    for tenant_id, share in shares.items():
        gw.budgets.set_limit(tenant_id, Decimal(share), (), ())


def record_run_alerts(store: Store, scenario: Scenario) -> list[BudgetAlertRow]:
    """Record each threshold the merged spend crossed, once per tenant and month; returns the new alerts."""
    start, end = run_months(scenario)
    found = []
    for tenant_id, (limit, alert_at) in _budgeted_tenants(store, scenario).items():
        recorded = {(row.month, Decimal(row.threshold)) for row in store.budget_alert_rows(f"{start:%Y-%m}", tenant_id)}
        for threshold in alert_at:
            for month, at, spent in store.first_crossings(tenant_id, start, end, threshold * limit):
                if (month, threshold) not in recorded:
                    found.append(BudgetAlertRow(tenant_id, month, threshold, at, spent, limit))
    store.insert_budget_alerts(found)
    return found

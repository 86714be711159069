"""Setting and reading budgets: what ``Gateway.set_budget`` and ``Gateway.get_budget`` do.

The store is written first and the in-memory ledger changed only once the
store took the change, so bad input or a failing database leaves both as
they were. A limit set when the month's spend has already crossed some of
its thresholds records those alerts at once, in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING

from ..store.tables import BudgetRow
from .budget_values import DEFAULT_ALERT_AT, Budget, parse_alert_at, parse_monthly_usd
from .budgets import BudgetLedger

if TYPE_CHECKING:
    from ..clock import Clock
    from ..gateway import Gateway
    from ..pricing import PriceTable
    from ..store import Store
    from .refusals import RefusalLog

__all__ = ["AlertAt", "budget_of", "get_budget", "load_ledger", "open_ledger", "set_budget"]

_log = logging.getLogger("vbgateway.budgets")
AlertAt = Iterable[Decimal | float | int | str] | None


def load_ledger(store: Store, ledger: BudgetLedger) -> None:
    """Fill ``ledger`` from DuckDB: budgets, this month's (and any later month's) spend and alerts."""
    ledger.load(store.budget_rows(), store.spend_since(ledger.month_start), store.budget_alert_rows(ledger.month))


def open_ledger(store: Store, clock: Clock, prices: PriceTable, refusals: RefusalLog | None = None) -> BudgetLedger:
    """The ledger of a gateway opening ``store``: filled now for a writer, on first use for a reader.

    ``refusals``: where its BUDGET_EXCEEDED refusals are noted (``request_refusals``).

    A writer fills it before its first reply, so that spend is counted from
    DuckDB plus every reply it commits; a read-only gateway (reports,
    ``vbgateway budget show``) only reads it, when asked.
    """
    ledger = BudgetLedger(clock, prices, refusals)
    if not store.read_only:
        load_ledger(store, ledger)
    return ledger


def _ledger(gw: Gateway) -> BudgetLedger:
    if not gw.budgets.loaded:
        load_ledger(gw.store, gw.budgets)
    return gw.budgets


def set_budget(gw: Gateway, tenant_id: str, monthly_usd: Decimal | int | str | None,
               alert_at: AlertAt = DEFAULT_ALERT_AT) -> Budget | None:
    """Give a tenant a monthly limit (``None`` removes it); returns the budget as it now stands."""
    if monthly_usd is None:
        tenant = gw.get_tenant(tenant_id)
        ledger = _ledger(gw)
        gw.store.delete_budget(tenant.id)
        ledger.remove(tenant.id)
        _log.info("budget of tenant %s removed", tenant.id)
        return None
    limit, thresholds = parse_monthly_usd(monthly_usd), parse_alert_at(alert_at)
    tenant = gw.get_tenant(tenant_id)
    ledger = _ledger(gw)
    now = gw.clock.now()
    due = ledger.due_alerts(tenant.id, limit, thresholds, now)
    gw.store.save_budget(BudgetRow(tenant.id, limit, list(thresholds), now, now), due)
    ledger.set_limit(tenant.id, limit, thresholds, due)
    _log.info("budget of tenant %s set to %s USD a month (alerts at %s)", tenant.id, limit,
              ", ".join(str(t) for t in thresholds) or "none")
    return ledger.status(tenant.id)


def get_budget(gw: Gateway, tenant_id: str) -> Budget | None:
    """The tenant's budget this UTC month (spent, reserved, remaining, alerts), or None without one."""
    tenant = gw.get_tenant(tenant_id)
    return _ledger(gw).status(tenant.id)


def budget_of(gw: Gateway, tenant_id: str) -> Budget | None:
    """``get_budget`` for a tenant known to exist (a tenant client's own): no look-up of the tenant."""
    return _ledger(gw).status(tenant_id)

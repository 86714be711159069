"""Governance of what tenants may spend: monthly budgets with exact reservations.

``budgets.BudgetLedger`` is the in-memory ledger on the send path;
``budget_admin`` sets and reads budgets for the gateway's operators;
``budget_values`` holds months, input checks and the ``Budget`` model.
"""

from .budget_values import DEFAULT_ALERT_AT, Budget, BudgetAlert
from .budgets import BudgetLedger, Hold

__all__ = ["DEFAULT_ALERT_AT", "Budget", "BudgetAlert", "BudgetLedger", "Hold"]

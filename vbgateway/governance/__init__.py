"""Governance: what tenants may spend (budgets), who may do what (scoped, expiring, rotating keys), how
much and how fast (rate limits) and which provider is worth calling (circuit breakers).

Modules: ``budgets`` (the in-memory ledger of monthly budgets with exact
reservations on the send path), ``budget_admin`` (setting and reading
budgets for the gateway's operators), ``budget_values`` (months, input
checks and the ``Budget`` model), ``scopes`` (the scope vocabulary and the
scope of every /v1 operation), ``keys`` (issuing, checking, rotating and
revoking keys), ``rate_limits`` (GCRA limits per tenant and per key, on the
gateway's clock), ``refusals`` (requests refused before any provider was
called, for a rate limit or a budget, journaled in batches for analytics),
``breaker`` (a circuit breaker per provider, ``BreakerPolicy``, its state
machine) and ``breaker_chain`` (the chain runner ``reliability.call_chain``
hands a request to when a breaker is configured). The gateway facade calls
into them; the send path pays a few dict look-ups for a tenant without
budget or limits.
"""

from .budget_values import DEFAULT_ALERT_AT, Budget, BudgetAlert
from .budgets import BudgetLedger, Hold
from .keys import OPERATOR_GRANT, KeyGrant, KeyHolder, KeyRing
from .rate_limits import RateLimiter, parse_rate_limit
from .refusals import RefusalLog
from .scopes import ALL_SCOPES, ROUTE_SCOPES, SCOPES, parse_scopes

__all__ = ["ALL_SCOPES", "DEFAULT_ALERT_AT", "OPERATOR_GRANT", "ROUTE_SCOPES", "SCOPES", "Budget", "BudgetAlert",
           "BudgetLedger", "Hold", "KeyGrant", "KeyHolder", "KeyRing", "RateLimiter", "RefusalLog", "parse_rate_limit",
           "parse_scopes"]

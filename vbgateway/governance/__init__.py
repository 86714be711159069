"""Governance: who may do what (scoped, expiring, rotating keys), how much (rate limits) and which
provider is worth calling (circuit breakers).

Modules: ``scopes`` (the scope vocabulary and the scope of every /v1
operation), ``keys`` (issuing, checking, rotating and revoking keys),
``rate_limits`` (GCRA limits per tenant and per key, on the gateway's
clock), ``refusals`` (refused requests, journaled in batches for analytics),
``breaker`` (a circuit breaker per provider, ``BreakerPolicy``, its state
machine) and ``breaker_chain`` (the chain runner ``reliability.call_chain``
hands a request to when a breaker is configured). The gateway facade calls
into them; the send path pays one dict look-up for a tenant without limits.
"""


from .keys import OPERATOR_GRANT, KeyGrant, KeyRing
from .rate_limits import RateLimiter, parse_rate_limit
from .refusals import RefusalLog
from .scopes import ALL_SCOPES, ROUTE_SCOPES, SCOPES, parse_scopes

__all__ = ["ALL_SCOPES", "OPERATOR_GRANT", "ROUTE_SCOPES", "SCOPES", "KeyGrant", "KeyRing", "RateLimiter",
           "RefusalLog", "parse_rate_limit", "parse_scopes"]

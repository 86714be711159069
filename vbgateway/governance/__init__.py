"""Governance: who may do what (scoped, expiring, rotating keys) and how much (rate limits).

Modules: ``scopes`` (the scope vocabulary and the scope of every /v1
operation), ``keys`` (issuing, checking, rotating and revoking keys),
``rate_limits`` (GCRA limits per tenant and per key, on the gateway's
clock), ``refusals`` (refused requests, journaled in batches for analytics).
The gateway facade calls into them; the send path pays one dict look-up
for a tenant without limits.
"""

from .keys import OPERATOR_GRANT, KeyGrant, KeyRing
from .rate_limits import RateLimiter, parse_rate_limit
from .refusals import RefusalLog
from .scopes import ALL_SCOPES, ROUTE_SCOPES, SCOPES, parse_scopes

__all__ = ["ALL_SCOPES", "OPERATOR_GRANT", "ROUTE_SCOPES", "SCOPES", "KeyGrant", "KeyRing", "RateLimiter",
           "RefusalLog", "parse_rate_limit", "parse_scopes"]

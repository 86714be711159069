"""Governance: the policies that decide, before and around a provider call, whether it happens.

``breaker``: a circuit breaker per provider (``BreakerPolicy``), its state
machine and the chain runner ``reliability.call_chain`` hands a request to
when a breaker is configured.
"""

__all__: list[str] = []

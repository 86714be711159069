"""Rate limits per tenant and per key: requests and tokens per minute, on the gateway's clock.

**Algorithm.** GCRA (the generic cell rate algorithm): a token bucket kept
as one number per limit, the theoretical arrival time (TAT) of the next
unit, instead of a level and a refill time. Time is the gateway clock's
``monotonic()``, so on a ``VirtualClock`` limits follow virtual time.
Arithmetic is in integers (microseconds times the rate), so an interval of
60,000,000 / rate microseconds never rounds: counts over virtual minutes
are exact.

**Burst.** A bucket holds one minute's allowance. At rest a tenant may
spend a whole minute's requests (or tokens) at once; they then come back
continuously at the rate (60 a minute: one a second). Over any ``t``
seconds at most ``limit * (1 + t / 60)`` pass.

**What counts.** A request is one send that would reach a provider (chat or
voice, ``MessageSender._send_once``): an idempotency replay, or a duplicate
that joins a request in flight, costs nothing and is not counted. The other
endpoints (agents, sessions, transcripts, usage) are not counted: they
call no provider and spend nothing. Tokens are charged at admission: the
request's input tokens (the contract's estimate, ceil(characters / 4) over
the prompt, the history and the message) plus the agent's
``max_output_tokens`` (1024 unless the agent was given another). When the reply is
known the charge is corrected to its ``tokens_in + tokens_out``; a request
that fails gets its tokens back (it still counts as a request). A request
larger than a whole minute's tokens is admitted only when the bucket is
full, and its excess is paid back before the next passes.

**All or nothing.** A request is admitted when every limit that applies
(the tenant's and the key's, requests and tokens) admits it; a refusal
(``RATE_LIMIT_EXCEEDED``, with ``retryAfterMs``) charges none of them,
calls no provider and touches no table (``refusals.py`` notes it in memory).

**Where the state lives.** The limits are rows of ``rate_limits`` (they
survive a reopen); the buckets are memory: a gateway that opens starts with
full buckets, and changing a limit starts its buckets full. Each gateway
process enforces limits on its own; ``share_among(n)`` makes each of ``n``
processes enforce its ``1/n`` share (the simulation's instances, which
split the sessions round-robin). A tenant without limits pays one dict
look-up per send.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import RateLimitExceededError, ValidationError
from ..models import DEFAULT_MAX_OUTPUT_TOKENS, RateLimit
from ..providers.base import ProviderRequest, ProviderResponse, estimate_tokens
from ..store.tables import RateLimitRow

if TYPE_CHECKING:
    from ..clock import Clock
    from ..models import Agent
    from ..store import Store
    from .refusals import RefusalLog

__all__ = ["DEFAULT_MAX_OUTPUT_TOKENS", "MAX_PER_MINUTE", "Bucket", "RateLimiter", "Ticket", "parse_rate_limit"]

MICROS_PER_MINUTE = 60_000_000
MAX_PER_MINUTE = 1_000_000_000  # a limit is stored as an INTEGER
_FIELDS = {"requests_per_minute": "requests_per_minute", "requestsPerMinute": "requests_per_minute",
           "tokens_per_minute": "tokens_per_minute", "tokensPerMinute": "tokens_per_minute"}


def _per_minute(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PER_MINUTE:
        raise ValidationError(f"{field} is a whole number from 1 to {MAX_PER_MINUTE:,}, or None for no limit",
                              details={"field": field})
    return value


def parse_rate_limit(value: object) -> RateLimit | None:
    """A limit from a ``RateLimit``, a mapping (snake_case or camelCase) or None; None when nothing is limited."""
    if value is None:
        return None
    if isinstance(value, RateLimit):
        fields: dict[str, Any] = value.model_dump()
    elif isinstance(value, Mapping):
        unknown = sorted(str(k)[:64] for k in value if k not in _FIELDS)
        if unknown:
            raise ValidationError(f"unknown rate limit field(s) {', '.join(unknown)}; known: requests_per_minute, "
                                  "tokens_per_minute", details={"field": "rate_limit", "unknown": unknown})
        fields = {_FIELDS[k]: v for k, v in value.items()}
    else:
        raise ValidationError("a rate limit is a mapping of requests_per_minute and/or tokens_per_minute",
                              details={"field": "rate_limit"})
    limit = RateLimit(requests_per_minute=_per_minute(fields.get("requests_per_minute"), "requests_per_minute"),
                      tokens_per_minute=_per_minute(fields.get("tokens_per_minute"), "tokens_per_minute"))
    return None if limit.requests_per_minute is None and limit.tokens_per_minute is None else limit


class Bucket:
    """One GCRA limit: ``rate`` units a minute, one minute's worth of burst, shared by ``instances`` processes.

    Times are ``microseconds * rate`` ("scaled"): one unit advances the TAT
    by ``60,000,000 * instances``, and the burst window is ``rate * 60,000,000``.
    """

    __slots__ = ("rate", "step", "tat", "window")

    def __init__(self, per_minute: int, instances: int = 1) -> None:
        self.rate = per_minute
        self.step = MICROS_PER_MINUTE * instances
        self.window = per_minute * MICROS_PER_MINUTE
        self.tat = 0  # at or before now: the bucket is full

    def wait(self, now_us: int, cost: int) -> int:
        """Microseconds until ``cost`` units would pass (0: now)."""
        now = now_us * self.rate
        base = max(self.tat, now)
        need = cost * self.step
        if base == now or base + need - now <= self.window:
            return 0
        late = base - now if need > self.window else base + need - now - self.window
        return -(-late // self.rate)

    def take(self, now_us: int, cost: int) -> None:
        self.tat = max(self.tat, now_us * self.rate) + cost * self.step

    def give_back(self, cost: int) -> None:
        """Return ``cost`` units (negative: charge more, without refusing anything)."""
        self.tat -= cost * self.step


@dataclass(slots=True)
class _Limits:
    """The buckets of one tenant's or one key's limit."""

    scope: str  # "tenant" or "key"
    config: RateLimit
    requests: Bucket | None
    tokens: Bucket | None


@dataclass(slots=True)
class _TenantLimits:
    tenant: _Limits | None
    keys: dict[str, _Limits]


@dataclass(slots=True)
class Ticket:
    """An admitted request's token charge, corrected by ``settle`` once its reply is known."""

    buckets: tuple[Bucket, ...]
    tokens: int

    def settle(self, response: ProviderResponse | None) -> None:
        """Charge what the reply used instead of the estimate (a failed request: nothing)."""
        used = 0 if response is None else response.tokens_in + response.tokens_out
        for bucket in self.buckets:
            bucket.give_back(self.tokens - used)
        self.tokens = used


class RateLimiter:
    """Every tenant's and key's limit and buckets; ``admit`` is the send path's check."""

    def __init__(self, clock: Clock, refusals: RefusalLog | None = None, store: Store | None = None) -> None:
        self._clock = clock
        self._refusals = refusals
        self._store = store  # where ``set`` keeps limits (None: memory only)
        self._configs: dict[str, tuple[str, str, RateLimit]] = {}  # subject -> (tenant, scope, limit)
        self._limited: dict[str, _TenantLimits] = {}  # tenants with any limit, of their own or a key's
        self._instances = 1

    # ------------------------------------------------------------------ configuration
    def load(self, rows: Sequence[RateLimitRow]) -> None:
        """The stored limits (``rate_limits``), as the gateway opens."""
        for row in rows:
            limit = RateLimit(requests_per_minute=row.requests_per_minute, tokens_per_minute=row.tokens_per_minute)
            self._configs[row.subject_id] = (row.tenant_id, row.kind, limit)
        for tenant_id in {tenant for tenant, _, _ in self._configs.values()}:
            self._rebuild(tenant_id)

    def set(self, subject_id: str, tenant_id: str, scope: str, limit: object) -> RateLimit | None:
        """Check, store (``rate_limits``) and apply a tenant's or key's whole limit; returns it (None: removed)."""
        parsed = parse_rate_limit(limit)
        if self._store is not None:
            row = None if parsed is None else RateLimitRow(subject_id, tenant_id, scope, parsed.requests_per_minute,
                                                           parsed.tokens_per_minute, self._clock.now())
            self._store.set_rate_limit_row(subject_id, row)
        self.configure(subject_id, tenant_id, scope, parsed)
        return parsed

    def configure(self, subject_id: str, tenant_id: str, scope: str, limit: RateLimit | None) -> None:
        """Set (or with None remove) the limit of a tenant or a key; its buckets start full."""
        if limit is None:
            self._configs.pop(subject_id, None)
        else:
            self._configs[subject_id] = (tenant_id, scope, limit)
        self._rebuild(tenant_id)

    def limit_of(self, subject_id: str) -> RateLimit | None:
        """The limit of a tenant or key id, as configured (None: no limit)."""
        config = self._configs.get(subject_id)
        return config[2] if config is not None else None

    def share_among(self, instances: int) -> None:
        """Enforce ``1/instances`` of every limit here (one of several gateways splitting the traffic evenly)."""
        if isinstance(instances, bool) or not isinstance(instances, int) or instances < 1:
            raise ValidationError("instances is a whole number >= 1", details={"field": "instances"})
        self._instances = instances
        for tenant_id in list(self._limited):
            self._rebuild(tenant_id)

    def _rebuild(self, tenant_id: str) -> None:
        entry = _TenantLimits(None, {})
        for subject, (tenant, scope, limit) in self._configs.items():
            if tenant != tenant_id:
                continue
            limits = _Limits(scope, limit, *(None if n is None else Bucket(n, self._instances)
                                             for n in (limit.requests_per_minute, limit.tokens_per_minute)))
            if scope == "tenant":
                entry.tenant = limits
            else:
                entry.keys[subject] = limits
        if entry.tenant is None and not entry.keys:
            self._limited.pop(tenant_id, None)
        else:
            self._limited[tenant_id] = entry

    # ------------------------------------------------------------------ the send path
    def admit(self, tenant_id: str, key_id: str | None, session_id: str | None, agent: Agent,
              request: ProviderRequest) -> Ticket | None:
        """Admit one send (charging every limit that applies) or raise RATE_LIMIT_EXCEEDED (charging none).

        The token charge is the request's input (its prompt and conversation,
        ``ProviderRequest.input_chars``, which the send path keeps counted)
        and the agent's most output tokens. The ticket settles it once the
        reply is known; None: nothing to settle (no token limit applies).
        """
        entry = self._limited.get(tenant_id)
        if entry is None:
            return None
        return self._admit(entry, tenant_id, key_id, session_id, agent, request)

    def _admit(self, entry: _TenantLimits, tenant_id: str, key_id: str | None, session_id: str | None, agent: Agent,
               request: ProviderRequest) -> Ticket | None:
        # On every reply of a limited tenant: plain loops, no lists or closures built per request.
        tenant_limits = entry.tenant
        key_limits = entry.keys.get(key_id) if key_id is not None else None
        if key_limits is None:
            if tenant_limits is None:
                return None
            applying: tuple[_Limits, ...] = (tenant_limits,)
        else:
            applying = (key_limits,) if tenant_limits is None else (tenant_limits, key_limits)
        tokens = 0
        for limits in applying:
            if limits.tokens is not None:
                tokens = estimate_tokens(request.input_chars()) + agent.max_output_tokens
                break
        now_us = round(self._clock.monotonic() * 1_000_000)
        longest: tuple[int, str, _Limits] | None = None  # the first of the longest waits, as max() picks it
        for limits in applying:
            if limits.requests is not None:
                wait = limits.requests.wait(now_us, 1)
                if wait > 0 and (longest is None or wait > longest[0]):
                    longest = (wait, "requestsPerMinute", limits)
            if limits.tokens is not None:
                wait = limits.tokens.wait(now_us, tokens)
                if wait > 0 and (longest is None or wait > longest[0]):
                    longest = (wait, "tokensPerMinute", limits)
        if longest is not None:
            raise self._refuse(tenant_id, key_id, session_id, *longest)
        token_buckets: tuple[Bucket, ...] = ()
        for limits in applying:
            if limits.requests is not None:
                limits.requests.take(now_us, 1)
            if limits.tokens is not None:
                limits.tokens.take(now_us, tokens)
                token_buckets += (limits.tokens,)
        return Ticket(token_buckets, tokens) if token_buckets else None

    def _refuse(self, tenant_id: str, key_id: str | None, session_id: str | None, wait_us: int, name: str,
                limits: _Limits) -> RateLimitExceededError:
        retry_ms = -(-wait_us // 1000)
        value = limits.config.requests_per_minute if name == "requestsPerMinute" else limits.config.tokens_per_minute
        what = "requests" if name == "requestsPerMinute" else "tokens"
        seconds = math.ceil(retry_ms / 1000)
        error = RateLimitExceededError(
            f"rate limit exceeded: the {limits.scope}'s {value:,} {what} per minute; retry in {seconds} s",
            details={"retryAfterMs": retry_ms, "limit": name, "scope": limits.scope, "value": value})
        if self._refusals is not None:
            self._refusals.record(tenant_id, key_id, session_id, None, error)
        return error

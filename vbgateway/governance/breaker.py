"""A circuit breaker per provider: stop calling a vendor that is down, and notice when it is back.

Without a breaker every request pays for a dead vendor in full: its tries,
its backoff waits and its timeouts, before the fallback answers. A breaker
remembers, across requests, that a provider is failing, and skips it at once.

States (per provider, per gateway process)::

    closed --(failure_threshold consecutive failures, or failure_rate over window_s
              with at least minimum_calls)--> open
    open   --(cooldown_s elapsed)--> half_open
    half_open --(half_open_probes trial calls succeed)--> closed
    half_open --(a trial call fails)--> open          (a new cooldown)

What counts: a failure is a 5xx answer, a timeout, an answer the adapter
cannot read, or an adapter that raises; a success is an answer. A 429 is the
vendor pacing us, not the vendor being down: it counts as neither unless
``count_rate_limits``. Other 4xx answers are the request's fault and count
as neither.

While a provider is skipped, the attempt log shows it as an attempt with
status ``skipped``, error code ``CIRCUIT_OPEN`` and no latency, and the
fallback answers. When every provider of a chain is open, ``when_all_open``
decides: ``"try_anyway"`` calls them as if there were no breaker (such calls
are not recorded by it: it closes only through its own probes), and
``"fail_fast"`` calls none and answers 503 ALL_PROVIDERS_FAILED. An agent
without a fallback is such a chain as soon as its provider opens: with
``"try_anyway"`` the breaker only ever redirects traffic to a fallback,
with ``"fail_fast"`` it also sheds load.

Every state change becomes a ``breaker_transitions`` row, and is counted by
provider and state entered for ``GET /metrics`` (``transition_counts``). Rows are kept in
memory and leave with the journal record of the request that caused them
(its reply, or its failure), so the send path never writes to DuckDB for a
breaker. Time is the gateway's clock (monotonic for windows and cooldowns,
``now()`` for what is recorded), so a ``VirtualClock`` drives it and a seeded
simulation repeats it exactly.

Breakers live in one gateway process, as in deployments that run several:
each process learns of an outage from its own calls. ``gateway_id`` in the
rows tells the processes (and a simulation's gateway instances) apart.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..clock import Clock
from ..providers.base import Provider, ProviderError, ProviderRequest
from ..store.tables import BreakerTransitionRow

if TYPE_CHECKING:
    from ..reliability import ChainResult, RetryPolicy
    from ..streaming import ReplySink

__all__ = ["CIRCUIT_OPEN", "CLOSED", "DENIED", "HALF_OPEN", "OPEN", "SKIPPED", "STATES", "WINDOW_BUCKETS",
           "BreakerPolicy", "BreakerState", "Breakers", "ProviderBreaker", "StateName"]

StateName = Literal["closed", "open", "half_open"]
CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"
STATES: tuple[StateName, ...] = (CLOSED, OPEN, HALF_OPEN)
SKIPPED, CIRCUIT_OPEN = "skipped", "CIRCUIT_OPEN"  # the attempt log's status and error code of a skip
DENIED = -1  # what ``admit`` answers instead of a ticket
WINDOW_BUCKETS = 20  # the failure-rate window's resolution: window_s / 20
_PROVIDER_DOWN = frozenset({"SERVER_ERROR", "TIMEOUT", "BAD_RESPONSE", "PROVIDER_EXCEPTION"})


class BreakerPolicy(BaseModel):
    """When a provider's circuit opens, how long it stays open, and how it closes again.

    Either trigger can be switched off with ``None`` (not both). The rate is
    measured over the last ``window_s`` in ``WINDOW_BUCKETS`` steps: a call
    leaves the window between 0.95 and 1.0 x ``window_s`` after it was made.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    failure_threshold: int | None = Field(default=5, ge=1, le=100_000,
                                          description="consecutive failures that open the circuit")
    failure_rate: float | None = Field(default=0.5, gt=0.0, le=1.0,
                                       description="share of failed calls in the window that opens the circuit")
    window_s: float = Field(default=30.0, gt=0.0, le=86_400.0)
    minimum_calls: int = Field(default=10, ge=1, le=10_000_000,
                               description="calls the window needs before its failure rate counts")
    cooldown_s: float = Field(default=30.0, gt=0.0, le=86_400.0, description="how long an open circuit stays open")
    half_open_probes: int = Field(default=1, ge=1, le=1000,
                                  description="trial calls let through after the cooldown; all must succeed")
    when_all_open: Literal["try_anyway", "fail_fast"] = "try_anyway"
    count_rate_limits: bool = Field(default=False, description="count a 429 as a failure")

    @model_validator(mode="after")
    def _some_trigger(self) -> BreakerPolicy:
        if self.failure_threshold is None and self.failure_rate is None:
            raise ValueError("set failure_threshold or failure_rate (or both): otherwise the circuit never opens")
        return self

    def is_failure(self, error: ProviderError) -> bool | None:
        """True: the provider failed; None: the call says nothing about its health (a 4xx, by default a 429)."""
        if error.error_code in _PROVIDER_DOWN or (error.http_status is not None and error.http_status >= 500):
            return True
        if error.error_code == "RATE_LIMITED" and self.count_rate_limits:
            return True
        return None

    def label(self) -> str:
        """A short name, e.g. ``breaker 5x/50% 30s``."""
        parts = []
        if self.failure_threshold is not None:
            parts.append(f"{self.failure_threshold}x")
        if self.failure_rate is not None:
            parts.append(f"{self.failure_rate:.0%}")
        text = f"breaker {'/'.join(parts)} {self.cooldown_s:g}s"
        return text + (" fail-fast" if self.when_all_open == "fail_fast" else "")


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One provider's breaker as ``Gateway.breaker_states()`` reports it."""

    provider: str
    state: StateName
    since: datetime
    failure_rate: float | None  # failed share of the calls in the window; None without calls
    calls_in_window: int
    failures_in_window: int
    consecutive_failures: int
    cooldown_ends_at: datetime | None  # when an open circuit lets its first probe through


class _Window:
    """Calls and failures of the last ``window_s``, in ``WINDOW_BUCKETS`` buckets: constant memory and time."""

    __slots__ = ("bucket_s", "calls", "failures", "head", "total_calls", "total_failures")

    def __init__(self, window_s: float) -> None:
        self.bucket_s = window_s / WINDOW_BUCKETS
        self.calls = [0] * WINDOW_BUCKETS
        self.failures = [0] * WINDOW_BUCKETS
        self.head = 0  # the bucket (counted from the clock's zero) the latest call fell into
        self.total_calls = self.total_failures = 0

    def add(self, t: float, failed: bool) -> None:
        bucket = int(t / self.bucket_s)
        if bucket > self.head:
            self.advance(bucket)
        i = self.head % WINDOW_BUCKETS
        self.calls[i] += 1
        self.total_calls += 1
        if failed:
            self.failures[i] += 1
            self.total_failures += 1

    def advance(self, bucket: int) -> None:
        """Forget the buckets that fell out of the window by ``bucket``."""
        if bucket - self.head >= WINDOW_BUCKETS:
            self.clear()
        else:
            for k in range(self.head + 1, bucket + 1):
                i = k % WINDOW_BUCKETS
                self.total_calls -= self.calls[i]
                self.total_failures -= self.failures[i]
                self.calls[i] = self.failures[i] = 0
        self.head = max(self.head, bucket)

    def counts(self, t: float) -> tuple[int, int]:
        """(calls, failures) in the window ending at ``t``."""
        bucket = int(t / self.bucket_s)
        if bucket > self.head:
            self.advance(bucket)
        return self.total_calls, self.total_failures

    def clear(self) -> None:
        for i in range(WINDOW_BUCKETS):
            self.calls[i] = self.failures[i] = 0
        self.total_calls = self.total_failures = 0


class ProviderBreaker:
    """The state machine of one provider.

    ``admit`` answers a ticket (the state's generation) or ``DENIED``; the
    call's outcome is reported with that ticket. An outcome whose ticket is
    of an earlier generation (a call let through before the circuit opened,
    ending after) changes nothing: it says nothing about the present state.
    """

    __slots__ = ("_owner", "consecutive", "generation", "name", "opened_at", "policy", "probes_admitted",
                 "probes_succeeded", "since", "state", "window")

    def __init__(self, name: str, owner: Breakers) -> None:
        self.name, self._owner, self.policy = name, owner, owner.policy
        self.state: StateName = CLOSED
        self.generation = 0
        self.since = owner.clock.now()
        self.opened_at = 0.0  # monotonic
        self.consecutive = 0
        self.window = _Window(self.policy.window_s)
        self.probes_admitted = self.probes_succeeded = 0

    def __repr__(self) -> str:
        return f"ProviderBreaker({self.name!r}, {self.state})"

    # ------------------------------------------------------------------ admission
    def admit(self) -> int:
        """A ticket for one call, or ``DENIED`` (open, or half-open with every probe taken)."""
        if self.state is CLOSED:
            return self.generation
        if self.state is OPEN:
            if self._owner.clock.monotonic() - self.opened_at < self.policy.cooldown_s:
                return DENIED
            self._end_cooldown()
        if self.probes_admitted >= self.policy.half_open_probes:
            return DENIED
        self.probes_admitted += 1
        return self.generation

    def refuses(self) -> bool:
        """Whether ``admit`` would answer ``DENIED`` now (changing nothing but an elapsed cooldown)."""
        if self.state is CLOSED:
            return False
        if self.state is OPEN:
            if self._owner.clock.monotonic() - self.opened_at < self.policy.cooldown_s:
                return True
            self._end_cooldown()
        return self.probes_admitted >= self.policy.half_open_probes

    # ------------------------------------------------------------------ outcomes
    def succeeded(self, ticket: int) -> None:
        if ticket != self.generation:
            return
        if self.state is CLOSED:
            self.consecutive = 0
            if self.policy.failure_rate is not None:
                self.window.add(self._owner.clock.monotonic(), False)
            return
        self.probes_succeeded += 1  # half-open: the ticket was a probe's
        if self.probes_succeeded >= self.policy.half_open_probes:
            self._change(CLOSED, "probe_succeeded")

    def failed(self, ticket: int, error: ProviderError) -> None:
        if ticket != self.generation:
            return
        policy = self.policy
        if policy.is_failure(error) is None:
            self.release(ticket)
            return
        if self.state is HALF_OPEN:
            self._change(OPEN, "probe_failed")
            return
        self.consecutive += 1
        if policy.failure_rate is not None:
            self.window.add(self._owner.clock.monotonic(), True)
        if policy.failure_threshold is not None and self.consecutive >= policy.failure_threshold:
            self._change(OPEN, "consecutive_failures")
        elif (policy.failure_rate is not None and self.window.total_calls >= policy.minimum_calls
              and self.window.total_failures >= policy.failure_rate * self.window.total_calls):
            self._change(OPEN, "failure_rate")

    def release(self, ticket: int) -> None:
        """A probe that ended without a verdict (a 429, a cancelled request): its slot is free again."""
        if ticket == self.generation and self.state is HALF_OPEN and self.probes_admitted > 0:
            self.probes_admitted -= 1

    # ------------------------------------------------------------------ transitions
    def _end_cooldown(self) -> None:
        """Open -> half-open, dated when the cooldown ended (it is noticed at the next call, or later)."""
        self._change(HALF_OPEN, "cooldown_elapsed", self.since + timedelta(seconds=self.policy.cooldown_s))

    def _change(self, to: StateName, reason: str, at: datetime | None = None) -> None:
        owner = self._owner
        clock = owner.clock
        at = at or clock.now()
        owner.record(BreakerTransitionRow(owner.gateway_id, owner.next_seq(), self.name, self.state, to, reason,
                                          self.consecutive, self.window.total_calls, self.window.total_failures,
                                          at))
        counts, key = owner.transition_counts, (self.name, to)
        counts[key] = counts.get(key, 0) + 1
        if self.state is CLOSED:
            owner.not_closed += 1
        elif to is CLOSED:
            owner.not_closed -= 1
        self.state, self.since = to, at
        self.generation += 1
        self.probes_admitted = self.probes_succeeded = 0
        if to is OPEN:
            self.opened_at = clock.monotonic()
        elif to is CLOSED:
            self.consecutive = 0
            self.window.clear()

    def current_state(self) -> StateName:
        """The state ``view`` reports (an elapsed cooldown shows as half-open), without reading the window."""
        if self.state is OPEN and self._owner.clock.monotonic() - self.opened_at >= self.policy.cooldown_s:
            return HALF_OPEN
        return self.state

    def view(self) -> BreakerState:
        """This breaker as it stands now (an elapsed cooldown shows as half-open; nothing is recorded)."""
        now = self._owner.clock.monotonic()
        state, since, ends = self.state, self.since, None
        if state is OPEN:
            ends = since + timedelta(seconds=self.policy.cooldown_s)
            if now - self.opened_at >= self.policy.cooldown_s:
                state, since, ends = HALF_OPEN, ends, None
        calls, failures = self.window.counts(now)
        return BreakerState(self.name, state, since, failures / calls if calls else None, calls, failures,
                            self.consecutive, ends)


class Breakers:
    """One gateway process's breakers, one per provider, and the transitions not yet committed."""

    def __init__(self, policy: BreakerPolicy, providers: Iterable[str], clock: Clock, gateway_id: str) -> None:
        self.policy, self.clock, self.gateway_id = policy, clock, gateway_id
        self.not_closed = 0  # breakers open or half-open: while 0 a chain needs no all-open check
        self.pending: list[BreakerTransitionRow] = []
        self.transition_counts: dict[tuple[str, str], int] = {}  # (provider, state entered) -> changes, for /metrics
        self._seq = 0
        self.by_name: Mapping[str, ProviderBreaker] = {name: ProviderBreaker(name, self) for name in providers}
        from .breaker_chain import run_chain  # it imports this module

        self._run_chain = run_chain

    def call_chain(self, chain: Sequence[tuple[str, Provider]], request: ProviderRequest, policy: RetryPolicy,
                   clock: Clock, rng: random.Random, result: ChainResult,
                   sink: ReplySink | None = None) -> Awaitable[ChainResult]:
        """``reliability.call_chain`` behind these breakers (``breaker_chain.run_chain``)."""
        return self._run_chain(self, chain, request, policy, clock, rng, result, sink)

    def __repr__(self) -> str:
        states = ", ".join(f"{name}={b.state}" for name, b in self.by_name.items())
        return f"Breakers({states})"

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def record(self, row: BreakerTransitionRow) -> None:
        self.pending.append(row)

    def take(self) -> list[BreakerTransitionRow]:
        """The transitions not yet handed to the store (they leave with the next journal record)."""
        rows, self.pending = self.pending, []
        return rows

    def all_open(self, names: Iterable[str]) -> bool:
        """Whether no provider of a chain would be let through now."""
        return all(self.by_name[name].refuses() for name in names)

    def earliest_cooldown_end(self, names: Iterable[str]) -> datetime | None:
        ends = [b.since + timedelta(seconds=self.policy.cooldown_s)
                for b in (self.by_name[name] for name in names) if b.state is OPEN]
        return min(ends) if ends else None

    def states(self) -> dict[str, BreakerState]:
        return {name: b.view() for name, b in self.by_name.items()}

    def current_states(self) -> dict[str, StateName]:
        """Per provider, its state now (what ``GET /metrics`` shows)."""
        return {name: b.current_state() for name, b in self.by_name.items()}

"""Retries, backoff, timeouts and fallback: how one reply is obtained.

``RetryPolicy`` is a small value (it is also what the simulation workbench
varies). ``call_chain`` tries the agent's primary provider with tenacity
under that policy, then the fallback provider with the same policy, and logs
every attempt, successful or not, with its latency on the injected clock.

Tenacity's strategies (retry on which errors, stop after how many attempts or
how long, wait how long) decide every step, but tenacity reads
``time.monotonic`` for its bookkeeping; so the attempt loop is ours and feeds
those strategies timestamps from the injected clock, sleeps through the clock
and times out each attempt with the clock's deadline. Everything therefore
follows a ``VirtualClock``. Jitter comes from a
seeded generator handed in by the gateway, never from the global ``random``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator
from tenacity import RetryCallState, retry_if_exception, stop_after_attempt, stop_after_delay
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from .clock import Clock
from .providers.base import Provider, ProviderError, ProviderRequest, ProviderResponse

__all__ = ["AttemptLog", "ChainResult", "RetryPolicy", "call_chain"]


class RetryPolicy(BaseModel):
    """How hard to try each provider, and whether to fall back.

    Defaults are the contract's: 2 s per attempt, 3 attempts per provider,
    exponential backoff from 200 ms with jitter, ``retryAfterMs`` honoured.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(default=3, ge=1, le=10)
    backoff_base_s: float = Field(default=0.2, ge=0.0, le=60.0)
    backoff_cap_s: float = Field(default=5.0, ge=0.0, le=600.0)
    jitter: float = Field(default=0.5, ge=0.0, le=1.0, description="share of each backoff that is randomised")
    timeout_s: float = Field(default=2.0, gt=0.0, le=600.0)
    fallback: bool = True
    honour_retry_after: bool = True
    retry_after_cap_s: float = Field(default=30.0, ge=0.0, le=3600.0)
    deadline_s: float | None = Field(default=None, gt=0.0, le=3600.0,
                                     description="stop retrying a provider once this much time has passed")

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> "RetryPolicy":
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff_cap_s must be >= backoff_base_s")
        return self

    def stop_strategy(self) -> stop_base:
        """Tenacity's stop condition for this policy (timestamps come from our clock)."""
        strategy: stop_base = stop_after_attempt(self.attempts)
        if self.deadline_s is not None:
            strategy = strategy | stop_after_delay(self.deadline_s)
        return strategy

    def backoff_s(self, failed_attempts: int, rng: random.Random) -> float:
        """Delay after the n-th failure: base x 2^(n-1), capped, part of it random."""
        delay = min(self.backoff_cap_s, self.backoff_base_s * (2 ** (failed_attempts - 1)))
        return delay * (1.0 - self.jitter) + delay * self.jitter * rng.random()


@dataclass(slots=True)
class AttemptLog:
    """One provider call as it happened (the row of ``provider_call_events``)."""

    provider: str
    status: str  # "ok" | "failed"
    http_status: int | None
    latency_ms: int
    retries: int
    error_code: str | None
    started_at: datetime


@dataclass(slots=True)
class ChainResult:
    response: ProviderResponse | None
    provider_used: str | None
    primary: str
    fallback: str | None
    attempts: list[AttemptLog] = field(default_factory=list)

    @property
    def fallback_used(self) -> bool:
        return self.provider_used is not None and self.provider_used != self.primary


class _PolicyWait(wait_base):
    """Backoff that honours a 429's retryAfterMs and draws jitter from our rng."""

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self.policy = policy
        self.rng = rng

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if (
            self.policy.honour_retry_after
            and isinstance(error, ProviderError)
            and error.retry_after_ms is not None
        ):
            return min(max(error.retry_after_ms, 0) / 1000.0, self.policy.retry_after_cap_s)
        return self.policy.backoff_s(retry_state.attempt_number, self.rng)


class _Failed:
    """The outcome of a failed attempt, as tenacity's strategies read it.

    Tenacity's own outcome is a ``concurrent.futures.Future`` with a lock and
    a condition variable; the strategies only ask ``failed``,
    ``exception()`` and ``result()``, so a plain object answers them at a
    fraction of the cost on the hot path.
    """

    __slots__ = ("_error",)
    failed = True

    def __init__(self, error: BaseException) -> None:
        self._error = error

    def exception(self) -> BaseException:
        return self._error

    def result(self) -> None:
        raise self._error


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, ProviderError) and error.retryable


_STRATEGY_RETRY = retry_if_exception(_is_retryable)


async def _one_attempt(provider: Provider, name: str, request: ProviderRequest, policy: RetryPolicy,
                       clock: Clock, log: list[AttemptLog], index: int) -> ProviderResponse:
    started_at, t0 = clock.now(), clock.monotonic()
    try:
        async with clock.timeout(policy.timeout_s):
            response = await provider.complete(request)
    except TimeoutError:
        error = ProviderError(f"{name} did not answer within {policy.timeout_s:g}s", error_code="TIMEOUT")
    except ProviderError as exc:
        error = exc
    except Exception as exc:  # a broken adapter must not take the gateway down
        error = ProviderError(f"{name} adapter raised {type(exc).__name__}", error_code="PROVIDER_EXCEPTION")
        error.__cause__ = exc
    else:
        latency = round((clock.monotonic() - t0) * 1000)
        log.append(AttemptLog(name, "ok", 200, latency, index, None, started_at))
        return response
    latency = round((clock.monotonic() - t0) * 1000)
    log.append(AttemptLog(name, "failed", error.http_status, latency, index, error.error_code, started_at))
    raise error


async def _try_provider(provider: Provider, name: str, request: ProviderRequest, policy: RetryPolicy,
                        clock: Clock, rng: random.Random, log: list[AttemptLog]) -> ProviderResponse | None:
    """Try one provider until it answers, the error is not retryable, or the policy stops.

    Tenacity's strategies decide (retry?, stop?, how long to wait?) on a
    ``RetryCallState`` whose timestamps we set from our clock, so even
    ``stop_after_delay`` follows virtual time. We drive the loop ourselves:
    tenacity's own loop re-inspects every callback on every attempt, which
    costs more than the rest of a send put together.
    """
    started = clock.monotonic()
    state: RetryCallState | None = None  # built at the first failure: most calls succeed at once
    for index in range(policy.attempts):
        try:
            return await _one_attempt(provider, name, request, policy, clock, log, index)
        except ProviderError as error:
            if state is None:
                retry, stop, wait = _STRATEGY_RETRY, policy.stop_strategy(), _PolicyWait(policy, rng)
                state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
                state.start_time = started
            state.outcome = _Failed(error)
            state.outcome_timestamp = clock.monotonic()
            if not retry(state) or stop(state):
                return None
            delay = wait(state)
            state.idle_for += delay
            await clock.sleep(delay)
            state.prepare_for_next_attempt()
    return None


async def call_chain(providers: Sequence[tuple[str, Provider]], request: ProviderRequest, policy: RetryPolicy,
                     clock: Clock, rng: random.Random) -> ChainResult:
    """Primary first, then (if the policy allows) the fallback; every attempt logged."""
    primary = providers[0][0]
    fallback = providers[1][0] if len(providers) > 1 and policy.fallback else None
    result = ChainResult(None, None, primary, fallback)
    chain = providers if policy.fallback else providers[:1]
    for name, provider in chain:
        response = await _try_provider(provider, name, request, policy, clock, rng, result.attempts)
        if response is not None:
            result.response, result.provider_used = response, name
            return result
    return result

"""Retries, backoff, timeouts and fallback: how one reply is obtained.

``RetryPolicy`` is a small value (it is also what the simulation workbench
varies) that answers the three questions of a retry loop: is this error
worth another try, has the provider had enough (attempts, ``deadline_s``),
and how long to wait first (``retryAfterMs`` of a 429, else exponential
backoff). ``call_chain`` runs that loop for the agent's primary provider,
then for the fallback provider with the same policy, and logs every attempt,
successful or not, with its latency on the injected clock.

The loop is written out here rather than delegated to a retry library so
that every timestamp, sleep and per-attempt deadline comes from the injected
clock (a ``VirtualClock`` in the simulation, where the deadline must follow
virtual time), and so that a send that succeeds at once pays for nothing but
its attempt. Jitter comes from a seeded generator handed in by the gateway,
never from the global ``random``.

With circuit breakers configured, ``call_chain`` hands the chain to
``governance.breaker_chain``, which runs this loop behind a breaker per
provider; without them nothing here changes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .clock import Clock
from .errors import AllProvidersFailedError, GatewayError, StreamInterruptedError
from .models import Attempt
from .providers.base import Provider, ProviderError, ProviderRequest, ProviderResponse
from .streaming import ReplySink, stream_attempt

if TYPE_CHECKING:
    from .governance.breaker import Breakers
    from .store.tables import BreakerTransitionRow

__all__ = ["AttemptLog", "ChainResult", "RetryPolicy", "call_chain"]


class RetryPolicy(BaseModel):
    """How hard to try each provider, and whether to fall back.

    Defaults are the contract's: 2 s per attempt, 3 attempts per provider,
    exponential backoff of 200 ms, 400 ms, 800 ms... each within +-10%,
    ``retryAfterMs`` honoured.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(default=3, ge=1, le=10)
    backoff_base_s: float = Field(default=0.2, ge=0.0, le=60.0)
    backoff_cap_s: float = Field(default=5.0, ge=0.0, le=600.0)
    jitter: float = Field(default=0.1, ge=0.0, le=1.0,
                          description="each backoff is drawn uniformly within its delay x (1 +- jitter)")
    timeout_s: float = Field(default=2.0, gt=0.0, le=600.0)
    fallback: bool = True
    honour_retry_after: bool = True
    retry_after_cap_s: float = Field(default=30.0, ge=0.0, le=3600.0)
    deadline_s: float | None = Field(default=None, gt=0.0, le=3600.0,
                                     description="stop retrying a provider once this much time has passed")

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> RetryPolicy:
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff_cap_s must be >= backoff_base_s")
        return self

    def gives_up(self, failed_attempts: int, elapsed_s: float) -> bool:
        """Whether a provider that just failed ``failed_attempts`` times, ``elapsed_s`` after
        its first try began, gets no further attempt."""
        if failed_attempts >= self.attempts:
            return True
        return self.deadline_s is not None and elapsed_s >= self.deadline_s

    def wait_s(self, failed_attempts: int, error: ProviderError, rng: random.Random) -> float:
        """The wait before the next attempt: a 429's ``retryAfterMs`` (capped) if honoured, else backoff."""
        if self.honour_retry_after and error.retry_after_ms is not None:
            return min(max(error.retry_after_ms, 0) / 1000.0, self.retry_after_cap_s)
        return self.backoff_s(failed_attempts, rng)

    def backoff_s(self, failed_attempts: int, rng: random.Random) -> float:
        """Delay after the n-th failure: base x 2^(n-1) within +-jitter, never above the cap.

        The spread is symmetric so that the default waits are centred on
        200, 400 and 800 ms, as clients of the original service expect.
        """
        delay = min(self.backoff_cap_s, self.backoff_base_s * (2 ** (failed_attempts - 1)))
        return float(min(self.backoff_cap_s, delay * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))))


@dataclass(slots=True)
class AttemptLog:
    """One provider call as it happened (the row of ``provider_call_events``)."""

    provider: str
    status: str  # "ok" | "failed" | "skipped" (a circuit breaker kept the call from happening)
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
    transitions: Sequence[BreakerTransitionRow] = ()  # circuit breaker changes to commit with this request
    retry_after_ms: int | None = None  # every circuit open: when the first one lets a probe through

    @property
    def fallback_used(self) -> bool:
        return self.provider_used is not None and self.provider_used != self.primary

    @property
    def circuit_open(self) -> bool:
        """No provider was called: every one was skipped by its circuit breaker."""
        return bool(self.attempts) and all(a.status == "skipped" for a in self.attempts)

    def attempt_dicts(self) -> list[dict[str, Any]]:
        """The attempt log in the shape of ``Attempt`` (snake_case), for one validation of a whole reply."""
        return [{"provider": a.provider, "status": a.status, "http_status": a.http_status, "latency_ms": a.latency_ms,
                 "retries": a.retries, "error_code": a.error_code} for a in self.attempts]

    def failure(self, request_id: str, streamed: bool) -> GatewayError:
        """Why no reply came, with every attempt: 502 when every provider failed; 503 when every circuit
        breaker was open and none was called; 502 STREAM_INTERRUPTED when the provider failed after text
        was sent (``streamed``: no other provider may continue it)."""
        attempts = [Attempt.model_validate(a).model_dump(by_alias=True, mode="json") for a in self.attempt_dicts()]
        details: dict[str, Any] = {"requestId": request_id, "attempts": attempts}
        if streamed:
            return StreamInterruptedError("the provider failed after the reply began; nothing was billed",
                                          details=details)
        if not self.circuit_open:
            return AllProvidersFailedError("every provider failed to answer", details=details)
        if self.retry_after_ms is not None:
            details["retryAfterMs"] = self.retry_after_ms
        return AllProvidersFailedError("every provider's circuit breaker is open: none was called", details=details,
                                       http_status=503)


async def _one_attempt(provider: Provider, name: str, request: ProviderRequest, policy: RetryPolicy,
                       clock: Clock, log: list[AttemptLog], index: int, sink: ReplySink | None) -> ProviderResponse:
    started_at, t0 = clock.now(), clock.monotonic()
    try:
        if sink is None:
            async with clock.timeout(policy.timeout_s):
                response = await provider.complete(request)
        else:
            response = await stream_attempt(provider, name, request, policy.timeout_s, clock, sink, t0)
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
    try:
        raise error
    finally:  # the raised error's traceback holds this frame: without the name, no cycle for the GC to free
        del error


async def _try_provider(provider: Provider, name: str, request: ProviderRequest, policy: RetryPolicy,
                        clock: Clock, rng: random.Random, log: list[AttemptLog],
                        sink: ReplySink | None = None) -> ProviderResponse | None:
    """Try one provider until it answers, the error is not retryable, the policy gives up, or
    (streaming) text has reached the caller."""
    started = clock.monotonic()
    failed = 0
    while True:
        try:
            return await _one_attempt(provider, name, request, policy, clock, log, failed, sink)
        except ProviderError as error:
            failed += 1
            if not error.retryable or policy.gives_up(failed, clock.monotonic() - started) or (
                    sink is not None and sink.started):
                return None
            await clock.sleep(policy.wait_s(failed, error, rng))


async def call_chain(providers: Sequence[tuple[str, Provider]], request: ProviderRequest, policy: RetryPolicy,
                     clock: Clock, rng: random.Random, breakers: Breakers | None = None,
                     sink: ReplySink | None = None) -> ChainResult:
    """Primary first, then (if the policy allows) the fallback; every attempt logged.

    With a ``sink`` (a streaming send) each attempt streams into it, and no
    provider is tried again once text has reached it (``streaming.py``).
    """
    primary = providers[0][0]
    fallback = providers[1][0] if len(providers) > 1 and policy.fallback else None
    result = ChainResult(None, None, primary, fallback)
    chain = providers if policy.fallback else providers[:1]
    if breakers is not None:
        return await breakers.call_chain(chain, request, policy, clock, rng, result, sink)
    for name, provider in chain:
        response = await _try_provider(provider, name, request, policy, clock, rng, result.attempts, sink)
        if response is not None:
            result.response, result.provider_used = response, name
            return result
        if sink is not None and sink.started:
            return result
    return result

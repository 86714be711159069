"""The provider chain of one request with circuit breakers: ``reliability.call_chain`` with a guard per provider.

The retry loop is ``reliability``'s, with three additions: a provider whose
breaker refuses is logged as a skipped attempt and the next provider is
tried; every call's outcome is reported to the provider's breaker; and a
provider whose breaker opens during this request's retries (its own failure
may be the one that opens it) is skipped at once rather than after another
backoff wait. The transitions the request saw leave with its result, to be
committed in its journal record.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..clock import Clock
from ..providers.base import Provider, ProviderError, ProviderRequest, ProviderResponse
from ..reliability import AttemptLog, ChainResult, RetryPolicy, _one_attempt, _try_provider
from .breaker import CIRCUIT_OPEN, DENIED, SKIPPED

if TYPE_CHECKING:
    from ..streaming import ReplySink
    from .breaker import Breakers, ProviderBreaker

__all__ = ["run_chain"]


def _skip(name: str, index: int, clock: Clock) -> AttemptLog:
    return AttemptLog(name, SKIPPED, None, 0, index, CIRCUIT_OPEN, clock.now())


async def _try_guarded(breaker: ProviderBreaker, provider: Provider, name: str, request: ProviderRequest,
                       policy: RetryPolicy, clock: Clock, rng: random.Random,
                       log: list[AttemptLog], sink: ReplySink | None) -> ProviderResponse | None:
    started = clock.monotonic()
    failed = 0
    ticket = breaker.admit()
    while True:
        if ticket == DENIED:
            log.append(_skip(name, failed, clock))
            return None
        try:
            response = await _one_attempt(provider, name, request, policy, clock, log, failed, sink)
        except ProviderError as error:
            failed += 1
            breaker.failed(ticket, error)
            if not error.retryable or policy.gives_up(failed, clock.monotonic() - started) or (
                    sink is not None and sink.started):
                return None
            wait = policy.wait_s(failed, error, rng)
        except BaseException:  # cancelled: a probe's slot must not stay taken
            breaker.release(ticket)
            raise
        else:
            breaker.succeeded(ticket)
            return response
        if breaker.refuses():  # opened by this failure (or meanwhile): no point waiting to be refused
            ticket = DENIED
            continue
        await clock.sleep(wait)
        ticket = breaker.admit()


async def run_chain(breakers: Breakers, chain: Sequence[tuple[str, Provider]], request: ProviderRequest,
                    policy: RetryPolicy, clock: Clock, rng: random.Random, result: ChainResult,
                    sink: ReplySink | None = None) -> ChainResult:
    """Try the chain's providers in turn, each behind its breaker; see ``breaker.py`` for the rules."""
    guarded = True
    if breakers.not_closed and breakers.all_open(name for name, _ in chain):
        if breakers.policy.when_all_open == "fail_fast":
            result.attempts.extend(_skip(name, 0, clock) for name, _ in chain)
            ends = breakers.earliest_cooldown_end(name for name, _ in chain)
            if ends is not None:
                result.retry_after_ms = max(0, round((ends - clock.now()).total_seconds() * 1000))
            return _with_transitions(breakers, result)
        guarded = False  # try_anyway: as if there were no breaker
    for name, provider in chain:
        if guarded:
            response = await _try_guarded(breakers.by_name[name], provider, name, request, policy, clock, rng,
                                          result.attempts, sink)
        else:
            response = await _try_provider(provider, name, request, policy, clock, rng, result.attempts, sink)
        if response is not None:
            result.response, result.provider_used = response, name
            break
        if sink is not None and sink.started:  # text reached the caller: no other provider may add to it
            break
    return _with_transitions(breakers, result)


def _with_transitions(breakers: Breakers, result: ChainResult) -> ChainResult:
    if breakers.pending:
        result.transitions = breakers.take()
    return result

"""When the HTTP client tries a request again, and how long it waits first.

A gateway answers 429 (too many requests) or 503 (not available right now)
before it does any work, often with a ``Retry-After`` header saying when to
come back: those answers are worth one more try, after the wait the server
asked for. Waits are bounded (a server asking for an hour gets an error at
once, not a frozen notebook), and they go through the clock the client was
given, so a test or a simulation on a ``VirtualClock`` never waits in real
time.

One 503 is the gateway's answer, not a refusal to work: every circuit
breaker open, it fails fast instead of calling a provider. That one is
raised at once, as the embedded client raises it; its ``retry_after`` (and
the ``Retry-After`` header) says when a circuit lets a probe through.

A connection that fails mid-request is different: the server may have done
the work. Only requests that are safe to repeat are tried again after one
(reads, agent updates, and message sends, which always carry an idempotency
key so a repeat replays the first reply instead of billing a second).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import orjson

from ..clock import Clock, VirtualClock, wait_real

__all__ = ["FAIL_FAST_CODES", "RETRY_STATUSES", "HttpRetryPolicy", "blocking_sleep", "retry_after_seconds",
           "worth_retrying"]

RETRY_STATUSES = frozenset({429, 503})
FAIL_FAST_CODES = frozenset({"ALL_PROVIDERS_FAILED"})  # 503s the gateway means: never tried again


@dataclass(frozen=True)
class HttpRetryPolicy:
    """How often and how long the client retries a refused or interrupted request.

    ``attempts`` counts the first try. Without a ``Retry-After`` the waits
    double from ``backoff_s``. A single wait longer than ``max_wait_s`` is not
    waited: the answer is raised as it is. ``total_wait_s`` bounds the waits of
    one call together.
    """

    attempts: int = 4
    backoff_s: float = 0.25
    max_wait_s: float = 30.0
    total_wait_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")
        if min(self.backoff_s, self.max_wait_s, self.total_wait_s) < 0:
            raise ValueError("waits must be >= 0")

    def wait_before(self, attempt: int, retry_after: float | None, waited: float) -> float | None:
        """Seconds to wait before try number ``attempt + 1`` (0-based ``attempt`` just failed), or None to stop."""
        if attempt + 1 >= self.attempts:
            return None
        wait = retry_after if retry_after is not None else self.backoff_s * 2 ** attempt
        if wait > self.max_wait_s or waited + wait > self.total_wait_s:
            return None
        return wait


def worth_retrying(status: int, content: bytes) -> bool:
    """Whether an answer is a refusal worth another try: a 429 or 503, but not a fail-fast 503."""
    if status not in RETRY_STATUSES:
        return False
    if status != 503 or not content:
        return True
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:  # not our envelope (a proxy's page): the usual refusal
        return True
    error = body.get("error") if isinstance(body, dict) else None
    return not (isinstance(error, dict) and error.get("code") in FAIL_FAST_CODES)


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A ``Retry-After`` header in seconds: delta-seconds or an HTTP date (RFC 9110); None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def blocking_sleep(clock: Clock) -> Callable[[float], None]:
    """How the client's synchronous methods wait on ``clock``.

    ``Clock.sleep`` is awaited, and a synchronous call cannot run a loop of its
    own where one is already running (a notebook cell). A virtual clock is
    moved forward instead; real time is waited on the calling thread.
    """
    if isinstance(clock, VirtualClock):
        return clock.advance
    return wait_real

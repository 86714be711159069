"""Simulated vendors: deterministic stand-ins for real LLM services.

They are part of the product, not test mocks: the demo, the tests and the
simulation workbench all send their traffic to them. Each draws every random
number it needs at the start of a call from its own seeded generator, so a
seeded run is reproducible regardless of how long the calls take.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Self

from ..clock import Clock, SystemClock
from .base import ProviderRequest, estimate_tokens

__all__ = ["SimulatedVendor", "VendorProfile"]

_OPENERS = (
    "Thanks for reaching out.",
    "Happy to help with that.",
    "Good question.",
    "I understand.",
    "Let me take care of that for you.",
)
_BODIES = (
    "Here is what I found: your account is in good standing and nothing needs your attention right now.",
    "The quickest way forward is to open the billing page, where you can see every charge and download receipts.",
    "I have noted your request and a specialist will follow up by email within one business day.",
    "You can change that setting under Account, then Preferences; the change applies immediately.",
    "Our records show the last payment was received and applied to your balance.",
    "That feature is available on your current plan, so no upgrade is needed.",
)
_CLOSERS = ("Is there anything else I can do?", "Anything else on your mind?", "Let me know if that helps.", "")
_TEMPLATES = len(_OPENERS) * len(_BODIES) * len(_CLOSERS)


@dataclass(frozen=True)
class VendorProfile:
    """How a simulated vendor behaves; the simulation's incidents swap profiles."""

    failure_rate: float = 0.0          # share of calls answering HTTP 500
    rate_limit_rate: float = 0.0       # share of calls answering HTTP 429
    retry_after_ms: tuple[int, int] = (500, 2500)
    latency_ms: tuple[float, float] = (50.0, 300.0)
    spike_rate: float = 0.0
    spike_factor: float = 1.0

    def __post_init__(self) -> None:
        for name in ("failure_rate", "rate_limit_rate", "spike_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        low, high = self.latency_ms
        if low < 0 or high < low:
            raise ValueError("latency_ms must be (low, high) with 0 <= low <= high")
        if self.retry_after_ms[0] < 0 or self.retry_after_ms[1] < self.retry_after_ms[0]:
            raise ValueError("retry_after_ms must be (low, high) with 0 <= low <= high")
        if self.spike_factor < 1.0:
            raise ValueError("spike_factor must be >= 1")


@dataclass(frozen=True, slots=True)
class _Draw:
    latency_s: float
    outcome: str  # "ok" | "error" | "rate_limited"
    retry_after_ms: int
    template: tuple[int, int, int]


class SimulatedVendor:
    """Shared machinery: seeded draws, simulated latency, a plausible reply."""

    name = "simulated"
    default_profile = VendorProfile()

    def __init__(self, profile: VendorProfile | None = None, *, seed: int | str | None = None,
                 clock: Clock | None = None, **profile_fields: Any) -> None:
        base = profile or self.default_profile
        self.profile = VendorProfile(**{**base.__dict__, **profile_fields}) if profile_fields else base
        self._rng = random.Random(seed)
        self.clock: Clock = clock or SystemClock()
        self.calls = 0

    def bind(self, clock: Clock) -> Self:
        self.clock = clock
        return self

    def _draw(self) -> _Draw:
        rng, profile = self._rng, self.profile
        latency_ms = rng.uniform(*profile.latency_ms)
        if profile.spike_rate and rng.random() < profile.spike_rate:
            latency_ms *= profile.spike_factor
        roll = rng.random()
        low, high = profile.retry_after_ms
        retry_after = low + int(rng.random() * (high - low + 1))
        if roll < profile.failure_rate:
            outcome = "error"
        elif roll < profile.failure_rate + profile.rate_limit_rate:
            outcome = "rate_limited"
        else:
            outcome = "ok"
        # One draw picks the whole reply template (opener x body x closer).
        pick = int(rng.random() * _TEMPLATES)
        pick, closer = divmod(pick, len(_CLOSERS))
        opener, body = divmod(pick, len(_BODIES))
        return _Draw(latency_ms / 1000.0, outcome, retry_after, (opener, body, closer))

    async def _simulate(self, request: ProviderRequest) -> tuple[_Draw, str, int, int]:
        """Wait the drawn latency; return the draw, and for a success the reply text and token counts."""
        self.calls += 1
        draw = self._draw()
        if draw.latency_s > 0:
            await self.clock.sleep(draw.latency_s)
        if draw.outcome != "ok":
            return draw, "", 0, 0
        text = _reply_text(request, draw.template, request.max_output_tokens)
        return draw, text, estimate_tokens(request.input_chars()), estimate_tokens(len(text))


def _reply_text(request: ProviderRequest, template: tuple[int, int, int], max_tokens: int | None) -> str:
    """The reply, cut to ``max_tokens`` (4 characters a token, as they are counted) like a model stopping at its limit."""
    opener, body, closer = _OPENERS[template[0]], _BODIES[template[1]], _CLOSERS[template[2]]
    last = request.messages[-1].content if request.messages else ""
    if "invoice" in last.lower() and "InvoiceLookup" in request.enabled_tools:
        body = "I checked with InvoiceLookup: your latest invoice is paid in full and a copy is in your inbox."
    text = " ".join([part for part in (opener, body, closer) if part])
    if max_tokens is not None and len(text) > max_tokens * 4:
        text = text[: max_tokens * 4]
    return text

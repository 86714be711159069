"""Simulated vendors: deterministic stand-ins for real LLM services.

They are part of the product, not test mocks: the demo, the tests and the
simulation workbench all send their traffic to them. Each is a provider like
any other, an adapter over a transport (``wire.py``); its transport is the
simulated vendor's service itself, in process (``SimulatedService``), so the
adapter reads the same raw shapes an HTTP vendor would send, without a byte
being encoded. The service draws every random number it needs at the start of
a call from its own seeded generator, so a seeded run is reproducible
regardless of how long the calls take.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..clock import Clock, SystemClock
from .base import ChatTurn, ProviderRequest, estimate_tokens, turn_chars
from .wire import Adapter, AdapterProvider, VendorRequest, VendorResponse

__all__ = ["SimulatedService", "SimulatedVendor", "VendorProfile"]

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


@dataclass(slots=True)
class _Draw:
    latency_s: float
    outcome: str  # "ok" | "error" | "rate_limited"
    retry_after_ms: int
    template: tuple[int, int, int]


class SimulatedService:
    """A simulated vendor's service, and the in-process transport that reaches it.

    ``send`` waits the drawn latency on the bound clock and answers with the
    drawn outcome; subclasses name the fields of their vendor's request body
    that hold the system prompt, the messages and the tools, and write its
    answers (``answer_ok``, ``answer_error``, ``answer_rate_limited``). The
    body goes back decoded (``VendorResponse.data``).
    """

    system_field: ClassVar[str] = "system"
    messages_field: ClassVar[str] = "messages"
    tools_field: ClassVar[str] = "tools"
    max_tokens_field: ClassVar[str] = "max_tokens"  # absent: no limit but the vendor's own

    def __init__(self, profile: VendorProfile, *, seed: int | str | None = None, clock: Clock | None = None) -> None:
        self.profile = profile
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

    async def send(self, request: VendorRequest) -> VendorResponse:
        """Wait the drawn latency; answer the drawn outcome in the vendor's shape."""
        self.calls += 1
        draw = self._draw()
        if draw.latency_s > 0:
            await self.clock.sleep(draw.latency_s)
        if draw.outcome == "error":
            return self.answer_error(draw.retry_after_ms)
        if draw.outcome == "rate_limited":
            return self.answer_rate_limited(draw.retry_after_ms)
        body = request.body
        messages: Sequence[ChatTurn] = body[self.messages_field]
        text = _reply_text(messages, body[self.tools_field], draw.template, body.get(self.max_tokens_field))
        chars = request.input_chars if request.input_chars >= 0 else len(body[self.system_field]) + turn_chars(messages)
        return self.answer_ok(text, estimate_tokens(chars), estimate_tokens(len(text)), round(draw.latency_s * 1000))

    # What a vendor's service answers: its subclass says.

    def answer_ok(self, text: str, tokens_in: int, tokens_out: int, latency_ms: int) -> VendorResponse:
        raise NotImplementedError

    def answer_error(self, retry_after_ms: int) -> VendorResponse:
        raise NotImplementedError

    def answer_rate_limited(self, retry_after_ms: int) -> VendorResponse:
        raise NotImplementedError


class SimulatedVendor(AdapterProvider):
    """A simulated vendor as a provider: its adapter over its service.

    Built like before the split (``VendorA(seed=1, failure_rate=0.2)``), and
    ``profile``, ``calls`` and ``clock`` still read (and ``profile`` swaps)
    the service's, as the simulation's incidents do.
    """

    name = "simulated"
    default_profile = VendorProfile()
    service_class: ClassVar[type[SimulatedService]] = SimulatedService

    def __init__(self, profile: VendorProfile | None = None, *, seed: int | str | None = None,
                 clock: Clock | None = None, **profile_fields: Any) -> None:
        base = profile or self.default_profile
        chosen = VendorProfile(**{**base.__dict__, **profile_fields}) if profile_fields else base
        self.service = self.service_class(chosen, seed=seed, clock=clock)
        super().__init__(self.name, self.make_adapter(), self.service)

    def make_adapter(self) -> Adapter:
        raise NotImplementedError

    @property
    def profile(self) -> VendorProfile:
        return self.service.profile

    @profile.setter
    def profile(self, profile: VendorProfile) -> None:
        self.service.profile = profile

    @property
    def calls(self) -> int:
        return self.service.calls

    @property
    def clock(self) -> Clock:
        return self.service.clock

    async def _serve(self, request: ProviderRequest) -> tuple[int, Any]:
        """The raw answer of the vendor's service to ``request``: its HTTP status and its body."""
        response = await self.service.send(self.adapter.build(request))
        return response.status, response.json()


def _reply_text(messages: Sequence[ChatTurn], tools: Sequence[str], template: tuple[int, int, int],
                max_tokens: int | None) -> str:
    """The reply, cut to ``max_tokens`` (4 characters a token, as they are counted) like a model stopping at its limit."""
    opener, body, closer = _OPENERS[template[0]], _BODIES[template[1]], _CLOSERS[template[2]]
    last = messages[-1].content if messages else ""
    if "invoice" in last.lower() and "InvoiceLookup" in tools:
        body = "I checked with InvoiceLookup: your latest invoice is paid in full and a copy is in your inbox."
    text = " ".join([part for part in (opener, body, closer) if part])
    if max_tokens is not None and len(text) > max_tokens * 4:
        text = text[: max_tokens * 4]
    return text

"""vendorB: answers OpenAI-like ``{"choices": [{"message": {"content"}}], "usage": {...}}``.

By default latency is uniform 100-300 ms with a 3% chance of a 4x spike, and
about 5% of calls answer HTTP 429 with ``retryAfterMs`` 500-2500.
"""

from __future__ import annotations

from typing import Any

from .base import ProviderError, ProviderRequest, ProviderResponse
from .simulated import SimulatedVendor, VendorProfile

__all__ = ["VendorB"]


class VendorB(SimulatedVendor):
    name = "vendorB"
    default_profile = VendorProfile(rate_limit_rate=0.05, retry_after_ms=(500, 2500), latency_ms=(100.0, 300.0),
                                    spike_rate=0.03, spike_factor=4.0)

    async def _serve(self, request: ProviderRequest) -> tuple[int, dict[str, Any]]:
        """The simulated vendorB service: an HTTP status and its JSON body."""
        draw, text, tokens_in, tokens_out = await self._simulate(request)
        if draw.outcome == "error":
            return 503, {"error": {"type": "server_error", "message": "service unavailable"}}
        if draw.outcome == "rate_limited":
            return 429, {"error": {"type": "rate_limit", "message": "slow down"}, "retryAfterMs": draw.retry_after_ms}
        return 200, {
            "id": "chatcmpl-sim",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
        }

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        status, body = await self._serve(request)
        if status == 200:
            try:
                text = body["choices"][0]["message"]["content"]
                usage = body["usage"]
                return ProviderResponse(str(text), int(usage["input_tokens"]), int(usage["output_tokens"]), body)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise ProviderError("vendorB answered an unexpected shape", error_code="BAD_RESPONSE",
                                    http_status=status) from exc
        raise ProviderError.from_http(self.name, status, body.get("retryAfterMs"))

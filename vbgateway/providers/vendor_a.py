"""vendorA: answers ``{"outputText", "tokensIn", "tokensOut", "latencyMs"}``.

By default latency is uniform 50-300 ms with a 5% chance of a 3x spike, and
about 10% of calls fail with HTTP 500 (api-contract.md).
"""

from __future__ import annotations

from typing import Any

from .base import ProviderError, ProviderRequest, ProviderResponse
from .simulated import SimulatedVendor, VendorProfile

__all__ = ["VendorA"]


class VendorA(SimulatedVendor):
    name = "vendorA"
    default_profile = VendorProfile(failure_rate=0.10, latency_ms=(50.0, 300.0), spike_rate=0.05, spike_factor=3.0)

    async def _serve(self, request: ProviderRequest) -> tuple[int, dict[str, Any]]:
        """The simulated vendorA service: an HTTP status and its JSON body."""
        draw, text, tokens_in, tokens_out = await self._simulate(request)
        if draw.outcome == "error":
            return 500, {"error": "internal_error", "message": "upstream model crashed"}
        if draw.outcome == "rate_limited":
            return 429, {"error": "rate_limited", "retryAfterMs": draw.retry_after_ms}
        return 200, {"outputText": text, "tokensIn": tokens_in, "tokensOut": tokens_out,
                     "latencyMs": round(draw.latency_s * 1000)}

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        status, body = await self._serve(request)
        if status == 200:
            try:
                return ProviderResponse(str(body["outputText"]), int(body["tokensIn"]), int(body["tokensOut"]), body)
            except (KeyError, TypeError, ValueError) as exc:
                raise ProviderError("vendorA answered an unexpected shape", error_code="BAD_RESPONSE",
                                    http_status=status) from exc
        raise ProviderError.from_http(self.name, status, body.get("retryAfterMs"))

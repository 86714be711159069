"""vendorA: answers ``{"outputText", "tokensIn", "tokensOut", "latencyMs"}``.

By default latency is uniform 50-300 ms with a 5% chance of a 3x spike, and
about 10% of calls fail with HTTP 500 (api-contract.md). Its request is
``{"systemPrompt", "messages": [{"role", "content"}], "enabledTools"}``, with
``maxOutputTokens`` when the agent sets one.
"""

from __future__ import annotations

from typing import Any

from .base import ProviderRequest
from .simulated import SimulatedService, SimulatedVendor, VendorProfile
from .wire import Adapter, JsonBodyAdapter, VendorRequest, VendorResponse

__all__ = ["VendorA", "VendorAAdapter", "VendorAService"]

PATH = "/v1/generate"


class VendorAAdapter(JsonBodyAdapter):
    """Our request to vendorA's and its answer to ours."""

    name = "vendorA"

    def build(self, request: ProviderRequest) -> VendorRequest:
        body: dict[str, object] = {"systemPrompt": request.system_prompt, "messages": request.messages,
                                   "enabledTools": request.enabled_tools}
        if request.max_output_tokens is not None:
            body["maxOutputTokens"] = request.max_output_tokens
        return VendorRequest(PATH, body, input_chars=request.input_chars())

    def read_reply(self, body: Any) -> tuple[str, int, int]:
        return str(body["outputText"]), int(body["tokensIn"]), int(body["tokensOut"])


class VendorAService(SimulatedService):
    """The simulated vendorA service."""

    system_field, messages_field, tools_field = "systemPrompt", "messages", "enabledTools"
    max_tokens_field = "maxOutputTokens"

    def answer_ok(self, text: str, tokens_in: int, tokens_out: int, latency_ms: int) -> VendorResponse:
        return VendorResponse(200, {"outputText": text, "tokensIn": tokens_in, "tokensOut": tokens_out,
                                         "latencyMs": latency_ms})

    def answer_error(self, retry_after_ms: int) -> VendorResponse:
        return VendorResponse(500, {"error": "internal_error", "message": "upstream model crashed"})

    def answer_rate_limited(self, retry_after_ms: int) -> VendorResponse:
        return VendorResponse(429, {"error": "rate_limited", "retryAfterMs": retry_after_ms})


class VendorA(SimulatedVendor):
    name = "vendorA"
    default_profile = VendorProfile(failure_rate=0.10, latency_ms=(50.0, 300.0), spike_rate=0.05, spike_factor=3.0)
    service_class = VendorAService

    def make_adapter(self) -> Adapter:
        return VendorAAdapter()

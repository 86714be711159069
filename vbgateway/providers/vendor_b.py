"""vendorB: answers OpenAI-like ``{"choices": [{"message": {"content"}}], "usage": {...}}``.

By default latency is uniform 100-300 ms with a 3% chance of a 4x spike, and
about 5% of calls answer HTTP 429 with ``retryAfterMs`` 500-2500. Its request
is ``{"model", "system", "messages": [{"role", "content"}], "tools"}``.
"""

from __future__ import annotations

from typing import Any

from .base import ProviderRequest
from .simulated import SimulatedService, SimulatedVendor, VendorProfile
from .wire import Adapter, JsonBodyAdapter, VendorRequest, VendorResponse

__all__ = ["VendorB", "VendorBAdapter", "VendorBService"]

PATH = "/v1/chat"


class VendorBAdapter(JsonBodyAdapter):
    """Our request to vendorB's and its answer to ours."""

    name = "vendorB"

    def build(self, request: ProviderRequest) -> VendorRequest:
        body: dict[str, object] = {"model": "vendorB", "system": request.system_prompt, "messages": request.messages,
                                   "tools": request.enabled_tools}
        if request.max_output_tokens is not None:
            body["max_tokens"] = request.max_output_tokens
        return VendorRequest(PATH, body, input_chars=request.input_chars())

    def read_reply(self, body: Any) -> tuple[str, int, int]:
        usage = body["usage"]
        return str(body["choices"][0]["message"]["content"]), int(usage["input_tokens"]), int(usage["output_tokens"])


class VendorBService(SimulatedService):
    """The simulated vendorB service."""

    system_field, messages_field, tools_field = "system", "messages", "tools"

    def answer_ok(self, text: str, tokens_in: int, tokens_out: int, latency_ms: int) -> VendorResponse:
        return VendorResponse(200, {
            "id": "chatcmpl-sim",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
        })

    def answer_error(self, retry_after_ms: int) -> VendorResponse:
        return VendorResponse(503, {"error": {"type": "server_error", "message": "service unavailable"}})

    def answer_rate_limited(self, retry_after_ms: int) -> VendorResponse:
        return VendorResponse(429, {"error": {"type": "rate_limit", "message": "slow down"},
                                         "retryAfterMs": retry_after_ms})


class VendorB(SimulatedVendor):
    name = "vendorB"
    default_profile = VendorProfile(rate_limit_rate=0.05, retry_after_ms=(500, 2500), latency_ms=(100.0, 300.0),
                                    spike_rate=0.03, spike_factor=4.0)
    service_class = VendorBService

    def make_adapter(self) -> Adapter:
        return VendorBAdapter()

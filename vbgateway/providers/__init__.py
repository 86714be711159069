"""LLM providers: the protocol, the two simulated vendors, and the default registry."""

from __future__ import annotations

from .base import ChatTurn, Provider, ProviderError, ProviderRequest, ProviderResponse, estimate_tokens
from .simulated import SimulatedVendor, VendorProfile
from .vendor_a import VendorA
from .vendor_b import VendorB

__all__ = [
    "ChatTurn",
    "Provider",
    "ProviderError",
    "ProviderRequest",
    "ProviderResponse",
    "SimulatedVendor",
    "VendorA",
    "VendorB",
    "VendorProfile",
    "default_providers",
    "estimate_tokens",
]


def default_providers(seed: int | None = None) -> dict[str, Provider]:
    """The contract's two vendors with their default behaviour."""
    return {
        "vendorA": VendorA(seed=seed),
        "vendorB": VendorB(seed=None if seed is None else seed + 1),
    }

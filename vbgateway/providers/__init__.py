"""LLM providers: the protocol, adapters over transports, the two simulated vendors, and the default registry."""

from __future__ import annotations

from .base import ChatTurn, Provider, ProviderError, ProviderRequest, ProviderResponse, estimate_tokens
from .simulated import SimulatedService, SimulatedVendor, VendorProfile
from .vendor_a import VendorA
from .vendor_b import VendorB
from .wire import Adapter, AdapterProvider, TextDelta, Transport, VendorRequest, VendorResponse

__all__ = [
    "Adapter",
    "AdapterProvider",
    "ChatTurn",
    "Provider",
    "ProviderError",
    "ProviderRequest",
    "ProviderResponse",
    "SimulatedService",
    "SimulatedVendor",
    "TextDelta",
    "Transport",
    "VendorA",
    "VendorB",
    "VendorProfile",
    "VendorRequest",
    "VendorResponse",
    "default_providers",
    "estimate_tokens",
]


def default_providers(seed: int | str | None = None) -> dict[str, Provider]:
    """The contract's two vendors with their default behaviour.

    Both are seeded from ``seed`` but differ from each other: vendorB takes
    ``seed + 1``, or for a text seed (the simulation's) ``"<seed>/vendorB"``.
    """
    vendor_b_seed = seed if seed is None else seed + 1 if isinstance(seed, int) else f"{seed}/vendorB"
    return {
        "vendorA": VendorA(seed=seed),
        "vendorB": VendorB(seed=vendor_b_seed),
    }

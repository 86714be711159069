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

"""What the tests of real (OpenAI-compatible) providers share: the loopback upstream's key, its prices, a long reply.

The ``upstream`` fixture (conftest.py) serves ``vbgateway.testing.upstream.Upstream`` with this key.
"""

from __future__ import annotations

from decimal import Decimal

from vbgateway.providers.openai import OpenAICompatible
from vbgateway.testing.upstream import Upstream

__all__ = ["IN", "LONG", "OUT", "UPSTREAM_KEY", "upstream_provider"]

UPSTREAM_KEY = "sk-upstream-test-0123456789"
IN, OUT = Decimal("0.15"), Decimal("0.60")  # USD per 1M tokens of the upstream provider
LONG = " ".join(f"word{i}" for i in range(40))  # a reply of ~40 stream events: slow under Fault.trickle


def upstream_provider(up: Upstream, name: str = "real") -> OpenAICompatible:
    """The upstream as a provider named ``name``, its key read from ``UPSTREAM_KEY`` in its own environment."""
    return OpenAICompatible(name, up.url, "upstream-model", "UPSTREAM_KEY", (IN, OUT),
                            environ={"UPSTREAM_KEY": UPSTREAM_KEY})

"""VocalBridge Ops: a multi-tenant AI agent gateway, billed exactly once, on DuckDB.

``Gateway.open(path)`` runs the gateway in this process; ``connect(url, api_key)``
is the same tenant client for a gateway that another process serves.
"""

from .clock import Clock, SystemClock, VirtualClock
from .errors import GatewayError
from .gateway import Gateway
from .governance.breaker import BreakerPolicy
from .models import Agent, Reply, Session, Tenant, VoiceReply
from .pricing import PriceTable
from .reliability import RetryPolicy
from .tenant import TenantClient

__all__ = [
    "Agent",
    "BreakerPolicy",
    "Clock",
    "Gateway",
    "GatewayError",
    "PriceTable",
    "Reply",
    "RetryPolicy",
    "Session",
    "SystemClock",
    "Tenant",
    "TenantClient",
    "VirtualClock",
    "VoiceReply",
    "__version__",
    "connect",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``connect`` loads the HTTP client (and httpx) when first asked for: a gateway that only serves never needs it."""
    if name == "connect":
        from .client import connect

        return connect
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""``connect(url, api_key)``: a tenant client for a gateway that is already running.

The counterpart of ``Gateway.connect(api_key)`` for a gateway in another
process (``vbgateway serve``): the key is checked once here, by asking the
server whose key it is, so a wrong key fails at once with INVALID_API_KEY,
exactly as the embedded call does.
"""

from __future__ import annotations

from collections.abc import Callable

from ..clock import Clock, SystemClock
from ..errors import AuthenticationError
from ..models import Tenant
from . import wire
from .retry import HttpRetryPolicy
from .tenant import HttpTenantClient
from .transport import DEFAULT_TIMEOUT_S, Transport, json_request

__all__ = ["connect"]

MAX_API_KEY_CHARS = 256


def connect(url: str, api_key: str, *, clock: Clock | None = None, retry: HttpRetryPolicy | None = None,
            timeout: float = DEFAULT_TIMEOUT_S, uds: str | None = None,
            sleep: Callable[[float], None] | None = None) -> HttpTenantClient:
    """The tenant client of ``api_key`` on the gateway serving ``url`` (e.g. ``http://127.0.0.1:3000``).

    ``clock`` times the waits between retries (``SystemClock()`` by default;
    a ``VirtualClock`` makes them instant); ``sleep`` replaces how the
    synchronous methods wait. ``uds`` reaches a server on a Unix socket
    (``url`` then only names the host in the requests).
    """
    if (not isinstance(api_key, str) or not 0 < len(api_key) <= MAX_API_KEY_CHARS or not api_key.isascii()
            or not api_key.isprintable() or " " in api_key):  # it travels in a header: no key has such characters
        raise AuthenticationError("missing or invalid API key")
    transport = Transport(url, api_key, clock=clock or SystemClock(), retry=retry or HttpRetryPolicy(),
                          timeout=timeout, uds=uds, sleep=sleep)
    try:
        me = transport.call(json_request("GET", "/v1/me"), replay_safe=True)
    except BaseException:
        transport.close()
        raise
    return HttpTenantClient(transport, Tenant.model_validate(me["tenant"]), wire.key_grant(me.get("key")))

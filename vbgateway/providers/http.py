"""The HTTP transport: vendor requests over ``httpx.AsyncClient``, connections pooled.

Timeouts are the gateway's: the retry loop runs every attempt under a
deadline on the gateway's clock (``reliability._one_attempt``), which
cancels the request when it expires, so httpx's own timeout is only a
backstop far behind it. What the network does wrong becomes a
``ProviderError`` here: a timeout is TIMEOUT, a refused, reset or dropped
connection SERVER_ERROR without an HTTP status (both retryable). A
``Retry-After`` (seconds or an HTTP date, or OpenAI's ``retry-after-ms``) is
read into ``VendorResponse.retry_after_ms`` on every answer.

The client's connections are ``pool.KeepAlivePool``'s, whose cost per
request stays flat however many requests are in flight (httpx's default
pool walks every connection on every request and answer).

An ``httpx.AsyncClient`` belongs to the event loop it first ran on, so the
transport keeps one client (one pool) per running loop: a deployed gateway
runs one loop and so one pool; a notebook or a test that runs several loops
in turn gets a client for each.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Self

import httpx
import orjson

from ..clock import Clock, SystemClock
from .base import ProviderError
from .pool import KeepAlivePool
from .wire import VendorRequest, VendorResponse

__all__ = ["BACKSTOP_TIMEOUT_S", "HttpStream", "HttpTransport", "retry_after_ms"]

BACKSTOP_TIMEOUT_S = 600.0  # the longest attempt a RetryPolicy allows: the clock's deadline always comes first
_JSON = {"content-type": "application/json", "accept": "application/json"}


def retry_after_ms(headers: Mapping[str, str], now: datetime) -> int | None:
    """The wait an answer asks for, in milliseconds: ``retry-after-ms``, else ``Retry-After`` (seconds or a date)."""
    given = headers.get("retry-after-ms")
    if given is not None:
        try:
            return max(0, round(float(given)))
        except ValueError:
            pass
    given = headers.get("retry-after")
    if given is None:
        return None
    try:
        return max(0, round(float(given) * 1000))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(given)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0, round((when - now).total_seconds() * 1000))


class HttpTransport:
    """Vendor requests to ``base_url`` + their path, as JSON, over pooled keep-alive connections.

    ``headers`` go on every request (an ``Authorization`` among them); they
    never appear in a ``repr``, a log line or an error.
    """

    def __init__(self, base_url: str, *, vendor: str, headers: Mapping[str, str] | None = None,
                 max_connections: int = 256, max_keepalive: int = 64, clock: Clock | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.vendor = vendor
        self._headers = {**_JSON, **(headers or {})}
        self._max_connections, self._max_keepalive = max_connections, max_keepalive
        self.clock: Clock = clock or SystemClock()
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary())

    def __repr__(self) -> str:
        return f"HttpTransport({self.base_url!r})"

    def bind(self, clock: Clock) -> Self:
        self.clock = clock
        return self

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            pool = KeepAlivePool(self.clock, max_connections=self._max_connections, max_keepalive=self._max_keepalive)
            client = httpx.AsyncClient(transport=pool, timeout=httpx.Timeout(BACKSTOP_TIMEOUT_S),
                                       headers=self._headers, trust_env=False, follow_redirects=False)
            self._clients[loop] = client
        return client

    def _build(self, request: VendorRequest) -> httpx.Request:
        return self._client().build_request(request.method, self.base_url + request.path,
                                            content=orjson.dumps(request.body), headers=request.headers or None)

    async def send(self, request: VendorRequest) -> VendorResponse:
        client = self._client()
        with self._translated():
            response = await client.send(self._build(request))
        headers = response.headers
        return VendorResponse(response.status_code, headers=headers, content=response.content,
                              retry_after_ms=retry_after_ms(headers, self.clock.now()))

    @asynccontextmanager
    async def stream(self, request: VendorRequest) -> AsyncIterator[HttpStream]:
        """The answer as soon as its headers arrived; its body's lines as they come (``HttpStream.lines``)."""
        client = self._client()
        with self._translated():
            response = await client.send(self._build(request), stream=True)
        try:
            yield HttpStream(self, response)
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        """Close the pool of the running loop (the others closed with their loops)."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def _translated(self) -> _Translated:
        return _Translated(self.vendor)


class HttpStream:
    """An HTTP answer whose body is still arriving."""

    def __init__(self, transport: HttpTransport, response: httpx.Response) -> None:
        self._transport = transport
        self._response = response
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers
        self.retry_after_ms = retry_after_ms(response.headers, transport.clock.now())

    async def lines(self) -> AsyncIterator[str]:
        with self._transport._translated():
            async for line in self._response.aiter_lines():
                yield line

    async def read(self) -> bytes:
        with self._transport._translated():
            return await self._response.aread()


class _Translated:
    """httpx's errors as the ``ProviderError`` the retry loop understands (the cause kept)."""

    __slots__ = ("vendor",)

    def __init__(self, vendor: str) -> None:
        self.vendor = vendor

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or not isinstance(exc, httpx.HTTPError):
            return
        name = type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            raise ProviderError(f"{self.vendor} did not answer in time ({name})", error_code="TIMEOUT") from exc
        if isinstance(exc, httpx.TransportError) and not isinstance(exc, httpx.UnsupportedProtocol):
            raise ProviderError(f"{self.vendor}: the connection failed ({name})", error_code="SERVER_ERROR") from exc
        raise ProviderError(f"{self.vendor}: the request could not be made ({name})",
                            error_code="CLIENT_ERROR") from exc

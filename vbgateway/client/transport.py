"""One HTTP exchange with the gateway, tried again when that is safe: the client's only I/O.

The tenant client holds what to ask; this module holds how: the base URL, the
key header, the connection pools, the retry loop and the translation of
error answers. Synchronous methods use one ``httpx.Client``; coroutines use an
``httpx.AsyncClient`` of the event loop they run on (a pool's connections
belong to one loop, and a notebook, a script calling ``asyncio.run`` twice,
and a test each bring their own).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import orjson

from ..clock import Clock
from .envelope import error_from_answer, unreachable
from .retry import RETRY_STATUSES, HttpRetryPolicy, blocking_sleep, retry_after_seconds

__all__ = ["DEFAULT_TIMEOUT_S", "Request", "Transport", "json_request"]

# A reply may take several provider attempts, backoffs and a fallback before it is billed.
DEFAULT_TIMEOUT_S = 60.0
Request = dict[str, Any]  # keyword arguments of httpx's build_request
# Coroutines share one pool per loop: enough connections that 100 concurrent sends never queue for one.
_CONCURRENT = httpx.Limits(max_connections=200, max_keepalive_connections=100)


class Transport:
    """Requests to one gateway with one API key; answers are JSON objects or raised ``GatewayError``s."""

    def __init__(self, base_url: str, api_key: str, *, clock: Clock, retry: HttpRetryPolicy,
                 timeout: float = DEFAULT_TIMEOUT_S, uds: str | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        from .. import __version__  # the package is still importing when this module is

        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.retry = retry
        self._sleep = sleep or blocking_sleep(clock)
        self._options: dict[str, Any] = {
            "base_url": self.base_url, "timeout": timeout,
            "headers": {"X-API-Key": api_key, "User-Agent": f"vbgateway-client/{__version__}"}}
        self._uds = uds
        self._sync: httpx.Client | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary())

    # ------------------------------------------------------------------ pools
    def _sync_client(self) -> httpx.Client:
        if self._sync is None:
            self._sync = httpx.Client(transport=httpx.HTTPTransport(uds=self._uds), **self._options)
        return self._sync

    def _async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            transport = httpx.AsyncHTTPTransport(uds=self._uds, limits=_CONCURRENT)
            client = httpx.AsyncClient(transport=transport, **self._options)
            self._async[loop] = client
        return client

    def close(self) -> None:
        """Close the synchronous pool (the pools of event loops close with ``aclose`` on each loop)."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        """Close the pool of the running event loop."""
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    # ------------------------------------------------------------------ exchanges
    def call(self, request: Request, *, replay_safe: bool) -> dict[str, Any]:
        """Send ``request`` (httpx ``build_request`` keywords), retrying as the policy allows."""
        client = self._sync_client()
        waited, attempt = 0.0, 0
        while True:
            try:
                response = client.send(client.build_request(**request))
            except httpx.TransportError as exc:
                wait = self.retry.wait_before(attempt, None, waited) if replay_safe else None
                if wait is None:
                    raise unreachable(self.base_url, exc) from exc
            else:
                wait = self._wait_after(response, attempt, waited)
                if wait is None:
                    return self._answer(response)
            self._sleep(wait)
            waited, attempt = waited + wait, attempt + 1

    async def acall(self, request: Request, *, replay_safe: bool) -> dict[str, Any]:
        """``call`` as a coroutine on the running loop, waiting through ``clock.sleep``."""
        client = self._async_client()
        waited, attempt = 0.0, 0
        while True:
            try:
                response = await client.send(client.build_request(**request))
            except httpx.TransportError as exc:
                wait = self.retry.wait_before(attempt, None, waited) if replay_safe else None
                if wait is None:
                    raise unreachable(self.base_url, exc) from exc
            else:
                wait = self._wait_after(response, attempt, waited)
                if wait is None:
                    return self._answer(response)
            await self.clock.sleep(wait)
            waited, attempt = waited + wait, attempt + 1

    def _wait_after(self, response: httpx.Response, attempt: int, waited: float) -> float | None:
        if response.status_code not in RETRY_STATUSES:
            return None
        retry_after = retry_after_seconds(response.headers.get("retry-after"), self.clock.now())
        return self.retry.wait_before(attempt, retry_after, waited)

    @staticmethod
    def _answer(response: httpx.Response) -> dict[str, Any]:
        try:
            body = orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            body = None
        if response.is_success and isinstance(body, dict):
            return body
        if response.is_success:  # 2xx that is not a JSON object: something else answered
            raise error_from_answer(502, None, response.headers.get("x-request-id"))
        raise error_from_answer(response.status_code, body, response.headers.get("x-request-id"))


def json_request(method: str, path: str, body: Mapping[str, Any] | None = None, *,
                 params: Mapping[str, Any] | None = None, headers: Mapping[str, str | bytes] | None = None) -> Request:
    """A request with a JSON body serialised by orjson (what the server parses fastest)."""
    request: Request = {"method": method, "url": path}
    if params:
        request["params"] = dict(params)
    all_headers = dict(headers or {})
    if body is not None:
        request["content"] = orjson.dumps(body)
        all_headers["Content-Type"] = "application/json"
    if all_headers:
        request["headers"] = all_headers
    return request

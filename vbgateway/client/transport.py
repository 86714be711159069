"""One HTTP exchange with the gateway, tried again when that is safe: the client's only I/O.

The tenant client holds what to ask; this module holds how: the base URL, the
key header, the connections, the retry loop and the translation of error
answers. Synchronous methods use one ``httpx.Client``. Coroutines use a
``StreamPool`` of the event loop they run on (connections belong to one
loop, and a notebook, a script calling ``asyncio.run`` twice, and a test each
bring their own), with requests written here in one piece.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from .. import __version__
from ..clock import Clock
from ..errors import GatewayError
from .envelope import error_from_answer, unreachable
from .retry import HttpRetryPolicy, blocking_sleep, retry_after_seconds, worth_retrying
from .streams import StreamPool

__all__ = ["DEFAULT_TIMEOUT_S", "Request", "Transport", "json_request"]

# A reply may take several provider attempts, backoffs and a fallback before it is billed.
DEFAULT_TIMEOUT_S = 60.0
Request = dict[str, Any]  # method, url (a path), and optionally params, headers, content, or files and data


class Transport:
    """Requests to one gateway with one API key; answers are JSON objects or raised ``GatewayError``s."""

    def __init__(self, base_url: str, api_key: str, *, clock: Clock, retry: HttpRetryPolicy,
                 timeout: float = DEFAULT_TIMEOUT_S, uds: str | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.retry = retry
        self.timeout = timeout
        self._sleep = sleep or blocking_sleep(clock)
        headers = {"X-API-Key": api_key, "User-Agent": f"vbgateway-client/{__version__}", "Accept": "application/json"}
        self._options: dict[str, Any] = {"base_url": self.base_url, "timeout": timeout, "headers": headers}
        self._uds = uds
        self._url = httpx.URL(self.base_url)
        self._prefix = self._url.raw_path.rstrip(b"/")
        fixed = {"Host": (self._url.netloc or b"localhost").decode("ascii"), **headers}
        self._head = b"".join(b"\r\n%s: %s" % (k.encode("ascii"), v.encode("ascii")) for k, v in fixed.items())
        self._sync: httpx.Client | None = None
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StreamPool] = weakref.WeakKeyDictionary()
        self._streaming: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary())

    # ------------------------------------------------------------------ connections
    def _sync_client(self) -> httpx.Client:
        if self._sync is None:
            self._sync = httpx.Client(transport=httpx.HTTPTransport(uds=self._uds), **self._options)
        return self._sync

    def _pool(self) -> StreamPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = StreamPool(self.clock, self._url, uds=self._uds)
        return pool

    def close(self) -> None:
        """Close the synchronous connections (those of event loops close with ``aclose`` on each loop)."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        """Close the connections of the running event loop."""
        loop = asyncio.get_running_loop()
        pool = self._pools.pop(loop, None)
        if pool is not None:
            await pool.aclose()
        streaming = self._streaming.pop(loop, None)
        if streaming is not None:
            await streaming.aclose()

    # ------------------------------------------------------------------ exchanges
    def call(self, request: Request, *, replay_safe: bool) -> dict[str, Any]:
        """Send ``request``, retrying as the policy allows; the answer's JSON object."""
        client = self._sync_client()
        waited, attempt = 0.0, 0
        while True:
            try:
                response = client.request(**request)
            except httpx.TransportError as exc:
                wait = self.retry.wait_before(attempt, None, waited) if replay_safe else None
                if wait is None:
                    raise unreachable(self.base_url, exc) from exc
            else:
                wait = self._wait_after(response.status_code, response.headers, response.content, attempt, waited)
                if wait is None:
                    return _answer(response.status_code, response.headers, response.content)
            self._sleep(wait)
            waited, attempt = waited + wait, attempt + 1

    async def acall(self, request: Request, *, replay_safe: bool) -> dict[str, Any]:
        """``call`` as a coroutine on the running loop, waiting through ``clock.sleep``."""
        pool, wire = self._pool(), self._encode(request)
        waited, attempt = 0.0, 0
        while True:
            try:
                answer = await pool.send(wire, self.timeout)
            except httpx.TransportError as exc:
                wait = self.retry.wait_before(attempt, None, waited) if replay_safe else None
                if wait is None:
                    raise unreachable(self.base_url, exc) from exc
            else:
                wait = self._wait_after(answer.status, answer.headers, answer.content, attempt, waited)
                if wait is None:
                    return _answer(answer.status, answer.headers, answer.content)
            await self.clock.sleep(wait)
            waited, attempt = waited + wait, attempt + 1

    async def aevents(self, request: Request) -> AsyncIterator[tuple[str, Any]]:
        """Server-Sent Events of a streamed answer: ``(event, data)`` pairs, data decoded from JSON.

        Retried like ``acall`` until an event stream begins (a refused
        connection, a 429 or 503 before it); never after, since text already
        given cannot be taken back. Any other answer is raised as its error.
        """
        client = self._streaming_client()
        headers = {**(request.get("headers") or {}), "Accept": "text/event-stream"}
        waited, attempt = 0.0, 0
        while True:
            began = False
            try:
                async with client.stream(request["method"], request["url"], content=request.get("content"),
                                         headers=headers) as response:
                    refusal = await response.aread() if response.status_code == 503 else b""
                    wait = self._wait_after(response.status_code, response.headers, refusal, attempt, waited)
                    if wait is None:
                        if response.status_code != 200 or not response.headers.get(
                                "content-type", "").startswith("text/event-stream"):
                            raise _stream_refused(response.status_code, response.headers, await response.aread())
                        began = True
                        async for event in _events(response.aiter_lines()):
                            yield event
                        return
            except httpx.TransportError as exc:
                if began:  # text was given: asking again would give it twice; the key replays the reply
                    raise _lost_mid_stream(self.base_url, exc) from exc
                wait = self.retry.wait_before(attempt, None, waited)
                if wait is None:
                    raise unreachable(self.base_url, exc) from exc
            await self.clock.sleep(wait)
            waited, attempt = waited + wait, attempt + 1

    def _streaming_client(self) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` of the running loop, for answers read as they arrive."""
        loop = asyncio.get_running_loop()
        client = self._streaming.get(loop)
        if client is None:
            transport = httpx.AsyncHTTPTransport(uds=self._uds)
            client = self._streaming[loop] = httpx.AsyncClient(transport=transport, **self._options)
        return client

    def _encode(self, request: Request) -> bytes:
        """The request as HTTP/1.1 bytes: head and body, written in one piece."""
        headers: dict[str, str | bytes] = dict(request.get("headers") or {})
        if "files" in request:  # multipart: httpx writes the form and its boundary
            form = httpx.Request("POST", "http://form", files=request["files"], data=request.get("data"))
            body = form.read()
            headers["Content-Type"] = form.headers["content-type"]
        else:
            body = request.get("content", b"")
        target = self._prefix + request["url"].encode("ascii")
        if request.get("params"):
            target += b"?" + urlencode(request["params"]).encode("ascii")
        lines = [b"%s %s HTTP/1.1" % (request["method"].encode("ascii"), target), self._head]
        lines += [b"\r\n%s: %s" % (k.encode("ascii"), v if isinstance(v, bytes) else v.encode("latin-1"))
                  for k, v in headers.items()]
        if body or request["method"] in ("POST", "PUT"):
            lines.append(b"\r\nContent-Length: %d" % len(body))
        return b"".join(lines) + b"\r\n\r\n" + body

    def _wait_after(self, status: int, headers: Mapping[str, str], content: bytes, attempt: int,
                    waited: float) -> float | None:
        """The wait before trying an answer's request again; None: the answer stands (``content``: its body,
        read for a 503's code)."""
        if not worth_retrying(status, content):
            return None
        retry_after = retry_after_seconds(headers.get("retry-after"), self.clock.now())
        return self.retry.wait_before(attempt, retry_after, waited)


def _answer(status: int, headers: Mapping[str, str], content: bytes) -> dict[str, Any]:
    """The JSON object of a 2xx answer; any other answer raised as the ``GatewayError`` it carries."""
    try:
        body = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        body = None
    if 200 <= status < 300 and isinstance(body, dict):
        return body
    if 200 <= status < 300:  # a 2xx that is not a JSON object: something else answered
        raise error_from_answer(502, None, headers.get("x-request-id"))
    raise error_from_answer(status, body, headers.get("x-request-id"))


def _lost_mid_stream(url: str, exc: Exception) -> GatewayError:
    """The connection broke after the stream began: the gateway finishes and bills the reply without us."""
    return GatewayError("the connection to the gateway broke during the stream; the gateway still finishes and "
                        "bills the reply, which the same idempotency key replays", code="SERVICE_UNAVAILABLE",
                        details={"url": url, "reason": type(exc).__name__, "streamBegan": True}, http_status=503)


def _stream_refused(status: int, headers: Mapping[str, str], content: bytes) -> GatewayError:
    """The error of an answer that is not an event stream (a refusal before the reply began)."""
    try:
        body = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        body = None
    return error_from_answer(status if status >= 400 else 502, body, headers.get("x-request-id"))


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, Any]]:
    """Server-Sent Events from their lines: ``event:`` and ``data:`` fields, dispatched at a blank line."""
    name, data = "message", list[str]()
    async for line in lines:
        if not line:
            if data:
                yield name, orjson.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
    if data:
        yield name, orjson.loads("\n".join(data))


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

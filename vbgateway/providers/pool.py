"""An HTTP/1.1 keep-alive pool for ``httpx.AsyncClient`` whose cost per request does not grow with the pool.

Why not httpx's own pool (httpcore): on every request and every answer it
walks all its connections, asking each one whether it is idle once per
connection (quadratic) and whether its socket is readable (a system call),
so at 50 requests in flight through a gateway that pool took a third of the
server's CPU. Here a request takes the last idle connection (LIFO) or opens
a new one, and an answer read to its end puts its connection back: a few
list operations whatever the pool's size.

It speaks only what a vendor API needs: HTTP/1.1 over TCP or TLS, bodies
framed by Content-Length or chunked (or, without either, the end of the
connection; read by ``vbgateway/http11.py``, as the client's pool reads
them), no proxies, no upgrades. httpx above it still builds the
request and decodes the answer (content encodings, text, JSON), and its
errors are httpx's (``ConnectError``, ``ReadError``, ``RemoteProtocolError``,
``ConnectTimeout``), so a caller cannot tell the pools apart.

A connection is reused only if the server left it open (no EOF seen, which
asyncio notices while it sits idle), the answer said nothing of
``Connection: close`` and its body was read to the end; a request cancelled
or failed half-way closes its connection. ``max_connections`` bounds the
connections open at once: further requests wait for one.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import httpx

from ..clock import Clock
from ..http11 import TO_END, Head, body_parts, parse_head, without_body

__all__ = ["KeepAlivePool"]

_HEAD_LIMIT = 1 << 20  # the longest response head (and stream buffer) read
_Key = tuple[str, str, int]


class _Connection:
    __slots__ = ("key", "reader", "writer")

    def __init__(self, key: _Key, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.key, self.reader, self.writer = key, reader, writer

    def reusable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing() and not self.reader._buffer  # type: ignore[attr-defined]

    def close(self) -> None:
        self.writer.close()


class KeepAlivePool(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 connections per origin, at most ``max_connections`` open, ``max_keepalive`` kept idle."""

    def __init__(self, clock: Clock, *, max_connections: int = 256, max_keepalive: int = 64,
                 connect_timeout_s: float = 30.0) -> None:
        self.clock = clock
        self.max_keepalive = max_keepalive
        self.connect_timeout_s = connect_timeout_s
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[_Key, list[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        await self._slots.acquire()
        connection: _Connection | None = None
        try:
            connection = self._take_idle(key) or await self._connect(key)
            head = await self._exchange(connection, request)
            length = 0 if without_body(head.status, to_head=request.method == "HEAD") else head.length
            body = _Body(self, connection, length, keep_alive=head.keep_alive)
        except BaseException:
            if connection is not None:
                connection.close()
            self._slots.release()
            raise
        return httpx.Response(head.status, headers=head.headers, stream=body,
                              extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason})

    def _take_idle(self, key: _Key) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.reusable():
                return connection
            connection.close()
        return None

    async def _connect(self, key: _Key) -> _Connection:
        scheme, host, port = key
        context = None
        if scheme == "https":
            context = self._ssl = self._ssl or ssl.create_default_context()
        elif scheme != "http":
            raise httpx.UnsupportedProtocol(f"the URL's scheme {scheme!r} is not http or https")
        try:
            async with self.clock.timeout(self.connect_timeout_s):
                reader, writer = await asyncio.open_connection(host, port, ssl=context, limit=_HEAD_LIMIT,
                                                               server_hostname=host if context else None)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} in time") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"no connection to {host}:{port}: {exc}") from exc
        return _Connection(key, reader, writer)

    async def _exchange(self, connection: _Connection, request: httpx.Request) -> Head:
        """Send ``request``; its answer's head."""
        body = request.content  # built by httpx from ``content=``: already in memory
        target = request.url.raw_path
        lines = [request.method.encode() + b" " + target + b" HTTP/1.1"]
        lines += [name + b": " + value for name, value in request.headers.raw if name.lower() != b"content-length"]
        if body or request.method in ("POST", "PUT", "PATCH"):
            lines.append(b"content-length: " + str(len(body)).encode())
        try:
            connection.writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
            await connection.writer.drain()
            raw = await connection.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise httpx.RemoteProtocolError("the server closed the connection without a complete answer") from exc
        except OSError as exc:
            raise httpx.ReadError(f"the connection failed: {exc}") from exc
        return parse_head(raw)

    def _put_back(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) < self.max_keepalive and connection.reusable():
            idle.append(connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


class _Body(httpx.AsyncByteStream):
    """An answer's body as it arrives; its connection goes back to the pool once it was read to the end."""

    def __init__(self, pool: KeepAlivePool, connection: _Connection, length: int | None, keep_alive: bool) -> None:
        self.pool, self.connection = pool, connection
        self.length = length
        self.keep_alive = keep_alive and length != TO_END
        self.complete = False
        self.released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in body_parts(self.connection.reader, self.length):
            yield part
        self.complete = True

    async def aclose(self) -> None:
        if self.released:
            return
        self.released = True
        if self.complete and self.keep_alive:
            self.pool._put_back(self.connection)
        else:
            self.connection.close()
        self.pool._slots.release()

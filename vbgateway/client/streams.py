"""``StreamPool``: keep-alive HTTP/1.1 connections on asyncio streams, for the client's coroutines.

The synchronous methods use httpx. The coroutines carry the traffic (fifty
sends in flight from one notebook or script), and there httpx's async stack
costs more CPU per request than the gateway spends answering it: its pool
scans every connection for every queued request, and each request is
rebuilt through URL parsing, cookies and redirect handling. A client of one
gateway needs much less: connections to one host (TCP or a Unix socket) in a
list of idle ones, a request written in one piece, an answer read by
``Content-Length`` or chunks (``vbgateway/http11.py``, which the providers'
pool reads its answers with too).

Failures are raised as httpx's transport errors, so the retry policy treats
both paths alike. A kept-alive connection may be closed by the server while
idle; a request that fails on such a connection before a byte of answer
arrived is sent once more on a new connection (the server never read it).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import NamedTuple

import httpx

from ..clock import Clock
from ..http11 import TO_END, body_parts, parse_head, without_body

__all__ = ["Answer", "StreamPool"]

_MAX_HEAD = 64 * 1024


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-case names; the last value of a repeated header
    content: bytes


class _Stale(Exception):
    """The connection ended before a byte of the answer."""


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()

    async def exchange(self, request: bytes) -> tuple[Answer, bool]:
        """Write one request, read its answer; also whether the connection can be kept."""
        self.writer.write(request)
        if len(request) > 65536:
            await self.writer.drain()
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _Stale from exc
            raise httpx.RemoteProtocolError("the connection closed in the middle of an answer's head") from exc
        except ConnectionError as exc:
            raise _Stale from exc
        except asyncio.LimitOverrunError as exc:
            raise httpx.RemoteProtocolError("an answer's head is too long") from exc
        head = parse_head(raw)
        length = 0 if without_body(head.status) else head.length
        if length is not None and length >= 0:  # the usual answer, read in one call
            try:
                content = await self.reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise httpx.ReadError(f"the answer broke off: {exc}") from exc
        else:
            content = b"".join([part async for part in body_parts(self.reader, length)])
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in head.headers}
        return Answer(head.status, headers, content), head.keep_alive and length != TO_END


class StreamPool:
    """Keep-alive connections to one host, for the coroutines of one event loop."""

    def __init__(self, clock: Clock, url: httpx.URL, *, uds: str | None = None, max_idle: int = 100) -> None:
        self._clock = clock
        self._url = url
        self._uds = uds
        self._max_idle = max_idle
        self._idle: list[_Connection] = []

    async def _open(self) -> _Connection:
        url = self._url
        try:
            if self._uds is not None:
                reader, writer = await asyncio.open_unix_connection(self._uds, limit=_MAX_HEAD)
            else:
                port = url.port or (443 if url.scheme == "https" else 80)
                reader, writer = await asyncio.open_connection(url.host, port, ssl=url.scheme == "https" or None,
                                                               limit=_MAX_HEAD)
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect: {exc}") from exc
        return _Connection(reader, writer)

    def _take(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                return connection
            connection.close()
        return None

    async def send(self, request: bytes, timeout: float | None) -> Answer:
        """One request (head and body, as bytes) answered, within ``timeout`` seconds on the clock."""
        try:
            async with self._clock.timeout(timeout) if timeout is not None else contextlib.nullcontext():
                answer, connection, keep = await self._exchange(request)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"no answer within {timeout} s") from exc
        if keep and len(self._idle) < self._max_idle:
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    async def _exchange(self, request: bytes) -> tuple[Answer, _Connection, bool]:
        connection = self._take()
        if connection is not None:
            try:
                answer, keep = await self._on(connection, request)
                return answer, connection, keep
            except _Stale:  # closed while idle: the server never read the request; a new connection takes it
                pass
        connection = await self._open()
        try:
            answer, keep = await self._on(connection, request)
            return answer, connection, keep
        except _Stale as exc:
            raise httpx.RemoteProtocolError("the server closed the connection without answering") from exc

    @staticmethod
    async def _on(connection: _Connection, request: bytes) -> tuple[Answer, bool]:
        try:
            return await connection.exchange(request)
        except BaseException:  # a failed or cancelled exchange leaves the connection in an unknown state
            connection.close()
            raise

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        for connection in idle:
            with contextlib.suppress(ConnectionError, OSError):
                await connection.writer.wait_closed()

"""HTTP/1.1 answers read from asyncio streams: the one reader of heads and bodies behind both keep-alive pools.

The providers' pool (``providers/pool.py``: an httpx transport to vendor
APIs, bodies handed on as they arrive) and the client's
(``client/streams.py``: the tenant client's coroutines, whole answers)
differ in what they keep and how they hand an answer on. How an answer is
framed is HTTP's, so it is read here once: the head (status, headers, and
whether the body has a length, comes in chunks or runs to the end of the
connection) and then the body, piece by piece. Failures are httpx's, as
both pools raise them: a malformed answer ``RemoteProtocolError``, a
connection that breaks off ``ReadError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import NamedTuple

import httpx

__all__ = ["CHUNKED", "TO_END", "Head", "body_parts", "parse_head", "without_body"]

CHUNKED = None  # Head.length of a chunked body
TO_END = -1  # Head.length of a body that runs to the end of the connection
_PIECE = 65536


class Head(NamedTuple):
    """An answer's head. ``length``: Content-Length, ``CHUNKED`` or ``TO_END``."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]  # in the order sent, names in lower case (HTTP's are case-blind)
    length: int | None
    keep_alive: bool  # the server did not say ``Connection: close``


def parse_head(raw: bytes) -> Head:
    """The head of an answer, given up to and including its blank line (``readuntil(b"\r\n\r\n")``)."""
    status_line, *lines = raw[:-4].split(b"\r\n")
    try:
        version, code, *reason = status_line.split(b" ", 2)
        if not version.startswith(b"HTTP/1."):
            raise ValueError(version)
        status = int(code)
    except ValueError as exc:
        raise httpx.RemoteProtocolError(f"not an HTTP/1.1 answer: {raw[:60]!r}") from exc
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = TO_END
    chunked, keep_alive = False, True
    for line in lines:
        name, _, value = line.partition(b":")
        lower, value = name.strip().lower(), value.strip()
        headers.append((lower, value))
        if lower == b"content-length":
            try:
                length = int(value)
            except ValueError as exc:
                raise httpx.RemoteProtocolError("a Content-Length that is not a number") from exc
        elif lower == b"transfer-encoding":
            chunked = chunked or b"chunked" in value.lower()
        elif lower == b"connection":
            keep_alive = keep_alive and b"close" not in value.lower()
    return Head(status, reason[0] if reason else b"", headers, CHUNKED if chunked else length, keep_alive)


def without_body(status: int, *, to_head: bool = False) -> bool:
    """Answers that never have a body, whatever their head says (RFC 9112, 6.3); ``to_head``: to a HEAD request."""
    return to_head or status in (204, 304) or 100 <= status < 200


async def body_parts(reader: asyncio.StreamReader, length: int | None) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive (a chunked body's data without its framing)."""
    try:
        if length is CHUNKED:
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any
                        pass
                    return
                chunk = await reader.readexactly(size + 2)
                yield chunk[:-2]
        elif length == TO_END:
            while chunk := await reader.read(_PIECE):
                yield chunk
        else:
            left = length
            while left:
                chunk = await reader.read(min(left, _PIECE))
                if not chunk:
                    raise httpx.ReadError(f"the answer broke off {left} bytes short")
                left -= len(chunk)
                yield chunk
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise httpx.RemoteProtocolError("the connection closed in the middle of the answer") from exc
    except OSError as exc:
        raise httpx.ReadError(f"the connection failed: {exc}") from exc

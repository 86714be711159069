"""The one reader of HTTP/1.1 answers behind both keep-alive pools, on real asyncio stream readers."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from vbgateway.http11 import CHUNKED, TO_END, body_parts, parse_head, without_body


def read_all(data: bytes, length: int | None, *, eof: bool = True) -> bytes:
    async def run() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        if eof:
            reader.feed_eof()
        return b"".join([part async for part in body_parts(reader, length)])

    return asyncio.run(run())


def test_a_head_gives_status_reason_headers_and_framing():
    head = parse_head(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n")
    assert (head.status, head.reason, head.length, head.keep_alive) == (201, b"Created", 12, True)
    assert head.headers == [(b"content-type", b"application/json"), (b"content-length", b"12")]
    chunked = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert chunked.length is CHUNKED  # chunked wins over a length, wherever it stands
    closing = parse_head(b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n")
    assert (closing.length, closing.keep_alive, closing.reason) == (TO_END, False, b"OK")
    assert parse_head(b"HTTP/1.1 204\r\n\r\n").reason == b""


@pytest.mark.parametrize("raw", [b"HTTP/2 200 OK\r\n\r\n", b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n"])
def test_a_head_that_is_not_http_1_1_is_a_protocol_error(raw):
    with pytest.raises(httpx.RemoteProtocolError):
        parse_head(raw)


def test_bodies_by_length_in_chunks_and_to_the_end():
    assert read_all(b"hello world, and more", 11, eof=False) == b"hello world"
    chunks = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n"
    assert read_all(chunks, CHUNKED, eof=False) == b"hello, world"
    assert read_all(b"until the end", TO_END) == b"until the end"
    assert read_all(b"", 0, eof=False) == b""


def test_a_body_that_breaks_off_is_a_read_error_and_bad_framing_a_protocol_error():
    with pytest.raises(httpx.ReadError):
        read_all(b"only a part", 100)
    with pytest.raises(httpx.RemoteProtocolError):
        read_all(b"zz\r\nhello\r\n", CHUNKED)
    with pytest.raises(httpx.RemoteProtocolError):
        read_all(b"5\r\nhel", CHUNKED)


def test_what_never_has_a_body():
    assert without_body(204) and without_body(304) and without_body(101)
    assert without_body(200, to_head=True) and not without_body(200) and not without_body(404)

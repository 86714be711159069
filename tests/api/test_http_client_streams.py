"""The coroutines' connections (``client.streams.StreamPool``) against scripted HTTP servers on loopback.

Each test runs a small asyncio server that answers as a real one may but
ours rarely does (in chunks, until it closes, not at all, after closing an
idle connection), and a pool on the same event loop. The pool must read each
answer whole, reuse only connections that can be reused, and send a request
again only when the server cannot have read it.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from vbgateway import SystemClock
from vbgateway.client.streams import StreamPool

REQUEST = b"GET /v1/me HTTP/1.1\r\nHost: test\r\n\r\n"


def serve(answers):
    """Run ``scenario(pool, seen)`` against a server whose n-th connection is handled by ``answers[n]``."""
    def run(scenario):
        async def main():
            seen: list[bytes] = []
            connections = iter(answers)

            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await next(connections)(reader, writer, seen)

            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            pool = StreamPool(SystemClock(), httpx.URL(f"http://127.0.0.1:{port}"))
            try:
                return await scenario(pool, seen)
            finally:
                await pool.aclose()
                server.close()
                await server.wait_closed()

        return asyncio.run(main())
    return run


async def read_request(reader: asyncio.StreamReader, seen: list[bytes]) -> None:
    seen.append(await reader.readuntil(b"\r\n\r\n"))


def keep_answering(*bodies: bytes):
    async def handler(reader, writer, seen):
        for body in bodies:
            await read_request(reader, seen)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await reader.read()  # until the client closes
        writer.close()
    return handler


def test_an_answer_in_chunks_is_read_whole():
    async def chunked(reader, writer, seen):
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Request-Id: req_1\r\n\r\n"
                     b"5\r\n{\"a\":\r\n3;ext=1\r\n 1}\r\n0\r\nTrailer: x\r\n\r\n")
        await writer.drain()
        await read_request(reader, seen)  # the same connection serves the next request
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await reader.read()

    async def scenario(pool, seen):
        first = await pool.send(REQUEST, 5)
        second = await pool.send(REQUEST, 5)
        return first, second, len(seen)

    first, second, requests = serve([chunked])(scenario)
    assert (first.status, first.content, first.headers["x-request-id"]) == (200, b'{"a": 1}', "req_1")
    assert second.content == b"{}" and requests == 2


def test_an_answer_without_a_length_runs_to_the_close_and_its_connection_is_not_reused():
    async def until_close(reader, writer, seen):
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of it")
        writer.close()

    async def scenario(pool, seen):
        return [(await pool.send(REQUEST, 5)).content for _ in range(2)]

    assert serve([until_close, until_close])(scenario) == [b"all of it", b"all of it"]


def test_a_request_on_a_connection_the_server_closed_while_idle_goes_on_a_new_one():
    async def answer_once_then_close(reader, writer, seen):
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
        await writer.drain()
        writer.close()  # a keep-alive timeout: the client has not noticed yet

    async def scenario(pool, seen):
        first = await pool.send(REQUEST, 5)
        await asyncio.sleep(0.05)  # the close arrives while the connection is idle
        second = await pool.send(REQUEST, 5)
        return first.content, second.content, len(seen)

    assert serve([answer_once_then_close, keep_answering(b"second")])(scenario) == (b"first", b"second", 2)


def test_a_new_connection_that_closes_without_answering_is_a_transport_error():
    async def hang_up(reader, writer, seen):
        await read_request(reader, seen)
        writer.close()

    async def scenario(pool, seen):
        with pytest.raises(httpx.RemoteProtocolError):
            await pool.send(REQUEST, 5)
        return len(seen)

    assert serve([hang_up])(scenario) == 1  # read by the server, so never sent twice


def test_an_answer_that_breaks_off_is_a_read_error():
    async def half(reader, writer, seen):
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part")
        writer.close()

    async def scenario(pool, seen):
        with pytest.raises(httpx.ReadError):
            await pool.send(REQUEST, 5)

    serve([half])(scenario)


def test_a_server_that_does_not_answer_in_time_is_a_read_timeout():
    async def silent(reader, writer, seen):
        await read_request(reader, seen)
        await reader.read()

    async def scenario(pool, seen):
        with pytest.raises(httpx.ReadTimeout):
            await pool.send(REQUEST, 0.2)

    serve([silent])(scenario)


def test_concurrent_requests_each_get_their_own_connection_and_their_own_answer():
    def numbered(n: int):
        async def handler(reader, writer, seen):
            await read_request(reader, seen)
            await asyncio.sleep(0.05 * (3 - n))  # answer in the reverse order
            body = b"%d" % n
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await reader.read()
        return handler

    async def scenario(pool, seen):
        answers = await asyncio.gather(*(pool.send(REQUEST, 5) for _ in range(3)))
        return sorted(a.content for a in answers), len(pool._idle)

    assert serve([numbered(0), numbered(1), numbered(2)])(scenario) == ([b"0", b"1", b"2"], 3)


def test_a_reused_connection_that_ends_without_an_answer_gets_the_request_again_on_a_new_one():
    async def answer_once_then_hang_up(reader, writer, seen):
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
        await read_request(reader, seen)  # the close raced the client's next request
        writer.close()

    async def scenario(pool, seen):
        first = await pool.send(REQUEST, 5)
        second = await pool.send(REQUEST, 5)
        return first.content, second.content, len(seen)

    assert serve([answer_once_then_hang_up, keep_answering(b"second")])(scenario) == (b"first", b"second", 3)

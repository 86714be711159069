"""A local OpenAI-compatible upstream: a real HTTP server on loopback, with faults on demand.

The tests (and the proxy benchmark) put it where a real vendor would be, so
every promise about real providers runs through the real HTTP stack without
the internet. It serves ``POST /v1/chat/completions`` (JSON, or Server-Sent
Events with ``"stream": true``) and ``GET /v1/models`` over HTTP/1.1
keep-alive, from its own thread and event loop.

Its answers are deterministic: the reply is ``"Upstream reply: "`` and the
last user message, and its ``usage`` counts words (messages' words plus 4
per message in, the reply's words out), numbers the contract's
characters / 4 estimate never gives, so a test can tell that real usage was
billed. Every request and every answer is recorded (``received``,
``answered``); an answer before its last byte is written, so a client that
has it finds it recorded.

``fail_next(*faults)`` queues faults; each chat request takes the next one
(first come, first served), then the upstream answers normally again:

- ``Fault.status(500)``, ``Fault.rate_limited(retry_after="2")``: an error answer;
- ``Fault.hang()``: no answer until the client gives up (a timeout);
- ``Fault.slow(0.3)``: the whole answer (or the stream's first byte) that much later;
- ``Fault.drop()``: the connection closed without an answer;
  ``Fault.drop(after_chunks=2)``: a stream cut off after two events;
- ``Fault.malformed()``: 200 with a body that is not a chat completion;
- ``Fault.no_usage()``: a normal answer (or stream) without ``usage``;
- ``Fault.trickle(0.05)``: a stream whose events come that far apart
  (``after_chunks=`` cuts it off too).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any, Self

import orjson

from ..clock import SystemClock

__all__ = ["Answered", "Fault", "Received", "Upstream"]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Fault:
    """What the upstream does wrong with one request."""

    kind: str
    code: int = 500  # the HTTP status of a "status" fault
    retry_after: str | None = None
    delay_s: float = 0.0
    after_chunks: int | None = None
    body: bytes | None = None

    @classmethod
    def status(cls, code: int, *, retry_after: str | None = None, body: bytes | None = None) -> Fault:
        return cls("status", code=code, retry_after=retry_after, body=body)

    @classmethod
    def rate_limited(cls, retry_after: str | None = "1") -> Fault:
        return cls("status", code=429, retry_after=retry_after)

    @classmethod
    def hang(cls, up_to_s: float = 60.0) -> Fault:
        return cls("hang", delay_s=up_to_s)

    @classmethod
    def slow(cls, delay_s: float) -> Fault:
        return cls("slow", delay_s=delay_s)

    @classmethod
    def drop(cls, after_chunks: int | None = None) -> Fault:
        return cls("drop", after_chunks=after_chunks)

    @classmethod
    def malformed(cls, body: bytes = b'{"choices": "not a list"') -> Fault:
        return cls("malformed", body=body)

    @classmethod
    def no_usage(cls) -> Fault:
        return cls("no_usage")

    @classmethod
    def trickle(cls, per_chunk_s: float, *, after_chunks: int | None = None) -> Fault:
        """A stream whose events come ``per_chunk_s`` apart (a long reply being written), optionally cut off."""
        return cls("trickle", delay_s=per_chunk_s, after_chunks=after_chunks)



@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class Answered:
    status: int
    text: str = ""
    usage: dict[str, int] | None = None
    fault: str | None = None
    stream: bool = False


@dataclass
class _State:
    faults: list[Fault] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    answered: list[Answered] = field(default_factory=list)


class Upstream:
    """An OpenAI-compatible server on ``127.0.0.1``; ``url`` is its base URL (ending in ``/v1``).

    ``api_key``: when given, requests without ``Authorization: Bearer <key>`` get 401.
    """

    def __init__(self, *, model: str = "upstream-model", api_key: str | None = None, port: int = 0) -> None:
        self.model = model
        self.api_key = api_key
        self.port = port
        self.clock = SystemClock()
        self._state = _State()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ control (any thread)
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def fail_next(self, *faults: Fault) -> None:
        with self._lock:
            self._state.faults.extend(faults)

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._state.received)

    @property
    def answered(self) -> list[Answered]:
        with self._lock:
            return list(self._state.answered)

    def reset(self) -> None:
        with self._lock:
            self._state = _State()

    def start(self) -> Self:
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="vbgateway-upstream", daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), loop).result(timeout=30)
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the server (its own loop)
    async def _listen(self) -> asyncio.Server:
        server = await asyncio.start_server(self._connection, "127.0.0.1", self.port, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._one_request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False once the connection is to be closed."""
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {name.strip().lower(): value.strip() for name, value in (ln.split(":", 1) for ln in lines if ln)}
        length = int(headers.get("content-length", "0"))
        raw = await reader.readexactly(length) if length else b""
        path = target.split("?", 1)[0]
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            await _write_json(writer, 401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
            return True
        if method == "GET" and path == "/v1/models":
            await _write_json(writer, 200, {"object": "list", "data": [{"id": self.model, "object": "model"}]})
            return True
        if method != "POST" or path != "/v1/chat/completions":
            await _write_json(writer, 404, {"error": {"message": "no such route", "type": "invalid_request_error"}})
            return True
        try:
            body = orjson.loads(raw)
            messages = body["messages"]
        except (ValueError, KeyError, TypeError):
            await _write_json(writer, 400, {"error": {"message": "not a chat request", "type": "invalid_request_error"}})
            return True
        with self._lock:
            self._state.received.append(Received(method, path, headers, body))
            fault = self._state.faults.pop(0) if self._state.faults else None
        return await self._chat(reader, writer, body, messages, fault)

    async def _chat(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: dict[str, Any],
                    messages: list[dict[str, Any]], fault: Fault | None) -> bool:
        kind = fault.kind if fault else None
        stream = bool(body.get("stream"))
        if fault is not None and kind in ("slow", "hang"):
            if kind == "hang":  # until the client gives up (closes), or ``delay_s`` passes
                with contextlib.suppress(TimeoutError):
                    async with self.clock.timeout(fault.delay_s):
                        await reader.read(1)
                self._record(Answered(0, fault="hang", stream=stream))
                return False
            await self.clock.sleep(fault.delay_s)
        if fault is not None and kind == "status":
            extra = {"retry-after": fault.retry_after} if fault.retry_after is not None else {}
            payload = fault.body or orjson.dumps({"error": {"message": f"upstream answered {fault.code}",
                                                            "type": "server_error"}})
            self._record(Answered(fault.code, fault="status", stream=stream))
            await _write(writer, fault.code, payload, "application/json", extra)
            return True
        if fault is not None and kind == "drop" and (not stream or fault.after_chunks is None):
            self._record(Answered(0, fault="drop", stream=stream))
            return False
        if fault is not None and kind == "malformed":
            self._record(Answered(200, fault="malformed", stream=stream))
            await _write(writer, 200, fault.body or b"", "application/json")
            return True
        last = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
        text = f"Upstream reply: {last}"
        words = sum(len(str(m.get("content", "")).split()) for m in messages)
        usage = {"prompt_tokens": words + 4 * len(messages), "completion_tokens": len(text.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        with_usage = kind != "no_usage"
        if stream:
            cut = fault.after_chunks if fault is not None and kind in ("drop", "trickle") else None
            include = with_usage and bool((body.get("stream_options") or {}).get("include_usage"))
            gap = fault.delay_s if fault is not None and kind == "trickle" else 0.0
            return await self._stream(writer, text, usage if include else None, cut, gap)
        answer: dict[str, Any] = {
            "id": f"chatcmpl-{len(self._state.answered)}", "object": "chat.completion", "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
        if with_usage:
            answer["usage"] = usage
        self._record(Answered(200, text, usage if with_usage else None, kind))  # before a client can have it
        await _write_json(writer, 200, answer)
        return True

    async def _stream(self, writer: asyncio.StreamWriter, text: str, usage: dict[str, int] | None,
                      cut_after: int | None, gap_s: float = 0.0) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        pieces = [word + " " for word in text.split(" ")]
        pieces[-1] = pieces[-1].rstrip(" ")
        events: list[dict[str, Any]] = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
        events += [{"choices": [{"index": 0, "delta": {"content": piece}}]} for piece in pieces]
        events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if usage is not None:
            events.append({"choices": [], "usage": usage})
        for sent, event in enumerate(events):
            if cut_after is not None and sent >= cut_after:
                self._record(Answered(200, text, None, "drop", stream=True))
                await writer.drain()
                return False
            event.update({"id": "chatcmpl-stream", "object": "chat.completion.chunk", "model": self.model})
            if gap_s and sent:
                await self.clock.sleep(gap_s)
            _chunk(writer, b"data: " + orjson.dumps(event) + b"\n\n")
            await writer.drain()
        _chunk(writer, b"data: [DONE]\n\n")
        self._record(Answered(200, text, usage, None, stream=True))  # before the client sees the stream end
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    def _record(self, answer: Answered) -> None:
        with self._lock:
            self._state.answered.append(answer)


def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


async def _write_json(writer: asyncio.StreamWriter, status: int, payload: object) -> None:
    await _write(writer, status, orjson.dumps(payload), "application/json")


async def _write(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str,
                 extra: dict[str, str] | None = None) -> None:
    headers = "".join(f"{name}: {value}\r\n" for name, value in (extra or {}).items())
    writer.write(f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\ncontent-type: {content_type}\r\n"
                 f"content-length: {len(body)}\r\n{headers}\r\n".encode("latin-1") + body)
    await writer.drain()

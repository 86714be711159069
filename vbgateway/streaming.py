"""Streaming replies: text as the provider writes it, billed exactly once whatever the caller does.

A streaming send is the ordinary send (``MessageSender.send``) with a
``ReplySink`` threaded down to the provider attempt. The attempt reads the
provider's stream (``stream_attempt``) and pushes each piece of text into the
sink; the caller reads the sink through ``ReplyStream``. Two rules follow
from where the sink sits:

- retries and fallback happen only before the first piece reaches the sink
  (``ReplySink.started``); a provider failing after it ends the stream with
  STREAM_INTERRUPTED and nothing is billed, since the reply was never whole;
- the send runs as its own task, not inside the caller's. A caller that stops
  reading (its HTTP client disconnected, a notebook cell interrupted) only
  detaches the sink: the provider is read to its end (bounded by the attempt
  timeout between pieces and by ``max_output_tokens``), and the reply is
  stored and billed once, its idempotency key then replaying it. The task is
  kept by the sender until it ends (``MessageSender.finish_detached``), so a
  closing server waits for it rather than losing the money.

A provider without a ``stream`` method (the simulated vendors) is read whole
and its text pushed as one piece: every agent can be streamed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .errors import GatewayError
from .models import Reply
from .providers.base import ProviderError, ProviderRequest, ProviderResponse, estimate_tokens
from .providers.wire import TextDelta

if TYPE_CHECKING:
    from .clock import Clock
    from .providers.base import Provider

__all__ = ["CHARS_PER_TOKEN_BOUND", "ReplySink", "ReplyStream", "TextDelta", "keep_until_done", "stream_attempt"]

CHARS_PER_TOKEN_BOUND = 16  # reading stops at max_output_tokens x this many characters: a vendor ignoring max_tokens
_DONE = object()
_log = logging.getLogger("vbgateway.streaming")


class ReplySink:
    """Where a streaming attempt puts text; ``started`` once the first piece is in (no retry after it)."""

    __slots__ = ("detached", "first_token_s", "queue", "started")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.started = False
        self.detached = False  # the reader went away: pieces are dropped, the send goes on
        self.first_token_s: float | None = None  # from the successful attempt's start to its first text

    def push(self, text: str) -> None:
        self.started = True
        if not self.detached:
            self.queue.put_nowait(text)

    def end(self) -> None:
        self.queue.put_nowait(_DONE)


async def stream_attempt(provider: Provider, name: str, request: ProviderRequest, timeout_s: float, clock: Clock,
                         sink: ReplySink, t0: float) -> ProviderResponse:
    """One streaming provider call: each piece of text into ``sink``, the whole response returned.

    ``timeout_s`` bounds the wait for the first piece and then for each next
    one (a long reply is not cut off while it keeps coming). Output past
    ``max_output_tokens`` x ``CHARS_PER_TOKEN_BOUND`` characters is not read:
    the reply ends there, billed at ``max_output_tokens``.
    """
    stream = getattr(provider, "stream", None)
    if stream is None:
        async with clock.timeout(timeout_s):
            response: ProviderResponse = await provider.complete(request)
        _first(sink, clock, t0)
        sink.push(response.text)
        return response
    limit = (request.max_output_tokens or 0) * CHARS_PER_TOKEN_BOUND or None
    items: AsyncIterator[TextDelta | ProviderResponse] = stream(request).__aiter__()
    parts: list[str] = []
    size = 0
    try:
        while True:
            try:
                async with clock.timeout(timeout_s):
                    item = await anext(items)
            except StopAsyncIteration:
                raise ProviderError(f"{name} ended its stream without a reply", error_code="BAD_RESPONSE",
                                    http_status=200) from None
            if isinstance(item, ProviderResponse):
                return item
            if limit is not None and size + len(item.text) > limit:
                kept = item.text[:limit - size]
                if kept:
                    sink.push(kept)
                parts.append(kept)
                text = "".join(parts)
                return ProviderResponse(text, estimate_tokens(request.input_chars()), request.max_output_tokens or 0)
            _first(sink, clock, t0)
            size += len(item.text)
            parts.append(item.text)
            sink.push(item.text)
    finally:
        closer: Callable[[], Coroutine[Any, Any, None]] | None = getattr(items, "aclose", None)
        if closer is not None:
            await closer()


def _first(sink: ReplySink, clock: Clock, t0: float) -> None:
    if not sink.started:
        sink.first_token_s = clock.monotonic() - t0


class ReplyStream:
    """``async for item in stream``: ``TextDelta`` items, then the ``Reply``; see the module's rules.

    ``start`` runs the send with the sink (``MessageSender.send``); ``keep``
    holds the task of a send whose reader went away until it ends.
    """

    def __init__(self, start: Callable[[ReplySink], Coroutine[Any, Any, Reply]],
                 keep: Callable[[asyncio.Task[Reply]], None]) -> None:
        self._start = start
        self._keep = keep

    def __aiter__(self) -> AsyncIterator[TextDelta | Reply]:
        return self._items()

    async def _items(self) -> AsyncIterator[TextDelta | Reply]:
        sink = ReplySink()
        task = asyncio.ensure_future(self._start(sink))
        task.add_done_callback(lambda _: sink.end())
        sent = False
        try:
            while True:
                item = await sink.queue.get()
                if item is _DONE:
                    break
                sent = True
                yield TextDelta(item)  # type: ignore[arg-type]
            reply = task.result()
            if not sent and reply.message.content:  # replayed, or joined another send of the same key
                yield TextDelta(reply.message.content)
            yield reply
        finally:
            if not task.done():
                sink.detached = True
                self._keep(task)


def _finished(task: asyncio.Task[Reply]) -> None:
    """A detached send ended: its reply is stored and billed, or it failed as any send can (logged)."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, GatewayError):
        _log.error("a streamed reply whose reader left failed", exc_info=error)


def keep_until_done(tasks: set[asyncio.Task[Reply]]) -> Callable[[asyncio.Task[Reply]], None]:
    """A ``keep`` for ``ReplyStream``: holds the task in ``tasks`` until it ends."""
    def keep(task: asyncio.Task[Reply]) -> None:
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(_finished)
    return keep

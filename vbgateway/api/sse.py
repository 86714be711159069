"""Server-Sent Events: a reply streamed over HTTP, in our events or in another wire's.

``open_reply_stream`` waits for a ``ReplyStream``'s first item before any
byte is sent, so a request refused or failed before the reply begins is
answered with its ordinary status and error envelope (402, 429, 502...),
not with a 200 that turns into an error. Once the first text exists the
answer is ``200 text/event-stream``, and ``EventStream`` writes each item as
an encoder turns it into bytes.

``EventStream`` is a plain ASGI response so that it controls the end: when
the client goes away (the server's ``send`` fails, or a server that drops
writes to a closed connection lets the loop run on) the reply stream is
closed or read to its end; either way the send goes on to be stored and
billed once (streaming.py). ``delta_events`` is the /v1 messages encoding:
``event: delta`` with ``{"text"}``, then ``event: done`` with the reply as
the JSON answer would carry it, or ``event: error`` with the error envelope.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..models import Reply
from ..streaming import ReplyStream, TextDelta
from .envelope import visible_error

__all__ = ["EVENT_STREAM_HEADERS", "EventStream", "ReplyItems", "delta_events", "error_payload",
           "open_reply_stream", "wants_event_stream"]

EVENT_STREAM_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no")]  # proxies in front must not hold the events back
ReplyItems = AsyncIterator[TextDelta | Reply]


def wants_event_stream(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for Server-Sent Events (``text/event-stream``, any parameters)."""
    if not accept:
        return False
    return any(part.split(";", 1)[0].strip().lower() == "text/event-stream" for part in accept.split(","))


async def open_reply_stream(stream: ReplyStream) -> tuple[TextDelta | Reply, ReplyItems]:
    """The stream's first item and the rest; raises the ``GatewayError`` of a send that failed before it."""
    items = stream.__aiter__()
    try:
        first = await anext(items)
    except BaseException:
        await items.aclose()  # type: ignore[attr-defined]
        raise
    return first, items


def error_payload(request_id: str, exc: Exception) -> dict[str, Any]:
    """The error envelope of a stream's ``error`` event (internal errors hidden, as in every answer)."""
    shown = visible_error(request_id, exc)
    return {"error": {"code": shown.code, "message": shown.message, "details": dict(shown.details),
                      "requestId": request_id}}


def _event(name: str, payload: object) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload, default=str) + b"\n\n"


async def delta_events(first: TextDelta | Reply, items: ReplyItems, request_id: str) -> AsyncIterator[bytes]:
    """The /v1 messages events: ``delta`` per piece of text, then ``done`` (the reply) or ``error``."""
    item = first
    try:
        while True:
            if isinstance(item, Reply):
                yield _event("done", item.model_dump(by_alias=True, mode="json"))
                return
            yield _event("delta", {"text": item.text})
            item = await anext(items)
    except Exception as exc:  # a GatewayError as its envelope; anything else as INTERNAL_ERROR, logged
        yield _event("error", error_payload(request_id, exc))


class EventStream(Response):
    """``200 text/event-stream`` whose body is ``events``; ``items`` (the reply stream) is closed at the end.

    A ``Response`` so that a FastAPI route can return it as it is.
    """

    def __init__(self, events: AsyncIterator[bytes], items: ReplyItems,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.events = events
        self.items = items
        self.status_code = 200
        self.background = None
        self.raw_headers = [*EVENT_STREAM_HEADERS, *(headers or [])]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in self.events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away; the reply goes on without it (streaming.py)
            pass
        finally:
            await self.events.aclose()  # type: ignore[attr-defined]
            await self.items.aclose()  # type: ignore[attr-defined]

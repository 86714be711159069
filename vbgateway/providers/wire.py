"""A provider as an adapter over a transport.

The adapter knows shapes: it turns our ``ProviderRequest`` into the vendor's
request (``VendorRequest``: a path and a JSON body) and the vendor's answer
(``VendorResponse``: a status, headers and a body) into our
``ProviderResponse`` or a ``ProviderError``. The transport knows how bytes
move: in process to a simulated vendor, or over HTTP to a real one. Neither
knows about retries, fallback or billing: ``AdapterProvider`` puts the two
together behind ``Provider.complete``, and everything above it (the retry
loop, the fallback chain, billing) is the same for simulated and real
vendors.

Streaming is shaped here but served later: a transport that can stream
offers ``stream(request)`` (an async context manager giving the status, the
headers and the body's lines as they arrive), and an adapter that can read
a stream turns those lines into ``TextDelta`` items and a final
``ProviderResponse`` with the usage.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

import orjson

from ..clock import Clock
from .base import ProviderError, ProviderRequest, ProviderResponse

__all__ = [
    "Adapter",
    "AdapterProvider",
    "JsonBodyAdapter",
    "StreamingTransport",
    "TextDelta",
    "Transport",
    "VendorRequest",
    "VendorResponse",
    "VendorStream",
    "bad_response",
]

_NOT_DECODED: Any = object()


@dataclass(slots=True)
class VendorRequest:
    """One request in the vendor's own shape: a path under the vendor's base URL and a JSON body.

    ``body`` is JSON-able data; orjson encodes dataclasses such as ``ChatTurn``
    as objects, so an adapter can hand the conversation over without copying it.
    Read-only by convention (not ``frozen``: a frozen dataclass is slower to
    build, and one is built for every provider call).
    """

    path: str
    body: Mapping[str, Any]
    method: str = "POST"
    headers: Mapping[str, str] | None = None
    stream: bool = False
    # The prompt's and conversation's characters as our request counted them (-1: not counted). Nothing
    # sends it: an in-process simulated service reads it instead of counting the whole conversation again.
    input_chars: int = -1


@dataclass(slots=True)
class VendorResponse:
    """The vendor's answer: status, headers (lower-case names) and the body.

    An HTTP transport gives ``content`` (bytes) and reads ``Retry-After``
    (an HTTP rule, not a vendor's shape) into ``retry_after_ms``; the
    in-process transport gives the decoded body itself (``data``), which
    nothing then encodes.
    """

    status: int
    data: Any = _NOT_DECODED  # second: the in-process transport builds one per call, positionally
    headers: Mapping[str, str] | None = None
    content: bytes = b""
    retry_after_ms: int | None = None

    def json(self) -> Any:
        """The body as JSON data (``orjson.JSONDecodeError``, a ``ValueError``, when it is not JSON)."""
        data = self.data
        if data is _NOT_DECODED:
            data = self.data = orjson.loads(self.content)
        return data


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the reply's text, as a streaming vendor sends it."""

    text: str


@runtime_checkable
class Transport(Protocol):
    """How a vendor request reaches the vendor: one method, all of the I/O."""

    def bind(self, clock: Clock) -> Self:
        """The gateway's clock (latency a simulated vendor waits, a Retry-After date)."""
        ...

    async def send(self, request: VendorRequest) -> VendorResponse:
        """The vendor's whole answer; ``ProviderError`` when none came (timeout, connection)."""
        ...


class VendorStream(Protocol):
    """An answer whose body arrives line by line (Server-Sent Events)."""

    status: int
    headers: Mapping[str, str]

    def lines(self) -> AsyncIterator[str]:
        """The body's lines as they arrive, without their line ends."""
        ...

    async def read(self) -> bytes:
        """The rest of the body at once (for an error status)."""
        ...


class StreamingTransport(Transport, Protocol):
    def stream(self, request: VendorRequest) -> AbstractAsyncContextManager[VendorStream]:
        """Open the request and give its answer while the body still arrives."""
        ...


class Adapter(Protocol):
    """Our shapes to a vendor's and back; no I/O."""

    def build(self, request: ProviderRequest) -> VendorRequest:
        ...

    def parse(self, request: ProviderRequest, response: VendorResponse) -> ProviderResponse:
        """The reply to ``request``, or ``ProviderError`` (the vendor's error status, or a body not in its shape)."""
        ...


class JsonBodyAdapter:
    """The answer half of an adapter whose vendor answers JSON and says in the body how long to wait
    (``retryAfterMs``), as the simulated vendors do; each says where its reply and token counts are."""

    name: str

    def read_reply(self, body: Any) -> tuple[str, int, int]:
        """The text, tokens in and tokens out of a 200's body (any lookup or conversion error: not its shape)."""
        raise NotImplementedError

    def parse(self, request: ProviderRequest, response: VendorResponse) -> ProviderResponse:
        status = response.status
        try:
            body = response.json()
        except ValueError as exc:
            raise bad_response(self.name, status, "a body that is not JSON") from exc
        if status == 200:
            try:
                text, tokens_in, tokens_out = self.read_reply(body)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise bad_response(self.name, status) from exc
            return ProviderResponse(text, tokens_in, tokens_out, body)
        retry_after = body.get("retryAfterMs") if isinstance(body, dict) else None
        raise ProviderError.from_http(self.name, status, retry_after if isinstance(retry_after, int) else None)


class AdapterProvider:
    """A ``Provider`` made of an adapter and a transport.

    ``complete`` is ``adapter.parse(request, await transport.send(adapter.build(request)))``;
    the simulated vendors and the HTTP vendors differ only in the two parts.
    """

    def __init__(self, name: str, adapter: Adapter, transport: Transport) -> None:
        self.name = name
        self.adapter = adapter
        self.transport = transport

    def bind(self, clock: Clock) -> Self:
        self.transport.bind(clock)
        return self

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        adapter = self.adapter
        return adapter.parse(request, await self.transport.send(adapter.build(request)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def bad_response(vendor: str, status: int, what: str = "an unexpected shape") -> ProviderError:
    """A 2xx answer the adapter cannot read: not worth retrying on the same vendor."""
    return ProviderError(f"{vendor} answered {what}", error_code="BAD_RESPONSE", http_status=status)

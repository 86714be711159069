"""The provider seam: the only place the gateway talks to an LLM vendor.

A provider turns a ``ProviderRequest`` into a ``ProviderResponse`` or raises
``ProviderError``. Each adapter speaks its vendor's own request and response
shapes and normalises them here, so the reliability layer and the gateway
never see a vendor's JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..clock import Clock

__all__ = [
    "ChatTurn",
    "Provider",
    "ProviderError",
    "ProviderRequest",
    "ProviderResponse",
    "estimate_tokens",
    "turn_chars",
]


def estimate_tokens(text_length: int) -> int:
    """Tokens as the contract estimates them: ceil(characters / 4)."""
    return math.ceil(text_length / 4)


def turn_chars(turns: Iterable[ChatTurn]) -> int:
    """The characters of a conversation's turns, as token estimates count them."""
    return sum([len(turn.content) for turn in turns])


@dataclass(slots=True)
class ChatTurn:
    """One turn of a conversation. Read-only by convention: the provider values below are not ``frozen``,
    as a frozen dataclass costs two to three times as much to build, and several are built for every reply."""

    role: str  # "user" | "assistant"
    content: str


@dataclass(slots=True)
class ProviderRequest:
    """What every vendor is asked: the agent's prompt, the conversation so far
    (ending with the new user message), the tools the agent may use and the
    most tokens the reply may hold (``None``: the vendor's own limit).

    A vendor never answers with more output tokens than ``max_output_tokens``:
    the budget reserves that many before the call (governance/budgets.py).
    """

    system_prompt: str
    messages: tuple[ChatTurn, ...]
    enabled_tools: tuple[str, ...] = ()
    request_id: str = ""
    max_output_tokens: int | None = None
    # The characters of ``messages`` when the caller keeps count (the send path does, per session), else -1.
    message_chars: int = -1

    def input_chars(self) -> int:
        """The characters of the prompt and the conversation: what token estimates are taken from."""
        return len(self.system_prompt) + (self.message_chars if self.message_chars >= 0 else turn_chars(self.messages))


@dataclass(slots=True)
class ProviderResponse:
    text: str
    tokens_in: int
    tokens_out: int
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


class ProviderError(Exception):
    """A vendor call that did not produce a reply.

    ``error_code`` is one of SERVER_ERROR, RATE_LIMITED, TIMEOUT,
    BAD_RESPONSE, CLIENT_ERROR. Only server errors, rate limits and timeouts
    are worth trying again; a SERVER_ERROR without an HTTP status is a
    connection that failed (refused, reset, dropped before the answer ended).
    ``retry_after_ms`` is the wait the vendor asked for (a 429's, or a 5xx's
    ``Retry-After``).
    """

    def __init__(
        self,
        message: str,
        *,
        error_code: str,
        http_status: int | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.http_status = http_status
        self.retry_after_ms = retry_after_ms

    @classmethod
    def from_http(cls, vendor: str, status: int, retry_after_ms: int | None = None) -> ProviderError:
        """Translate a non-2xx answer into the error the reliability layer understands."""
        if status == 429:
            return cls(f"{vendor} rate limited the call", error_code="RATE_LIMITED", http_status=429,
                       retry_after_ms=retry_after_ms)
        if status >= 500:
            return cls(f"{vendor} answered HTTP {status}", error_code="SERVER_ERROR", http_status=status,
                       retry_after_ms=retry_after_ms)
        return cls(f"{vendor} answered HTTP {status}", error_code="CLIENT_ERROR", http_status=status)

    @property
    def retryable(self) -> bool:
        if self.error_code == "TIMEOUT":
            return True
        if self.http_status is None:
            return self.error_code == "SERVER_ERROR"
        return self.http_status == 429 or self.http_status >= 500


@runtime_checkable
class Provider(Protocol):
    """One LLM vendor behind one method."""

    name: str

    def bind(self, clock: Clock) -> Provider:
        """Give the provider the gateway's clock (for latency it simulates or measures)."""
        ...

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        """Ask the vendor for the assistant's next message."""
        ...

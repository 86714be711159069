"""What a message send takes, checked before anything is sent: content, channel, context turns, keys.

The send path (messaging.py) trusts its arguments; every door (the embedded
tenant client, the HTTP client, the HTTP API, the OpenAI-compatible front
door, voice) checks them here first, so all refuse bad input with the same
VALIDATION_ERROR and change nothing. Also here: the request's fingerprint
for idempotency, and the lossless JSON of a reply kept in its idempotency
record.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import Decimal
from typing import Literal, get_args

import orjson

from .errors import ValidationError
from .models import MAX_CONTENT_CHARS, Reply, clean_text
from .providers.base import ChatTurn

__all__ = ["MAX_CONTEXT_TURNS", "MAX_IDEMPOTENCY_KEY_CHARS", "TextChannel", "reply_from_record", "reply_to_record",
           "request_fingerprint", "validate_channel", "validate_content", "validate_context",
           "validate_idempotency_key", "validate_max_output_tokens"]

MAX_IDEMPOTENCY_KEY_CHARS = 255


def validate_content(content: object) -> str:
    if not isinstance(content, str):
        raise ValidationError("content must be a string", details={"field": "content"})
    if not content.strip():
        raise ValidationError("content must not be empty", details={"field": "content"})
    if len(content) > MAX_CONTENT_CHARS:
        raise ValidationError(f"content is limited to {MAX_CONTENT_CHARS} characters",
                              details={"field": "content", "length": len(content)})
    try:
        return clean_text(content)
    except ValueError as exc:
        raise ValidationError(str(exc), details={"field": "content"}) from exc


TextChannel = Literal["chat", "openai"]  # the doors a text message comes in by (voice has its own path)
_TEXT_CHANNELS = frozenset(get_args(TextChannel))


def validate_channel(channel: object) -> TextChannel:
    if not isinstance(channel, str) or channel not in _TEXT_CHANNELS:
        raise ValidationError(f"a text message's channel is one of {', '.join(get_args(TextChannel))}",
                              details={"field": "channel"})
    return channel  # type: ignore[return-value]


def validate_idempotency_key(key: object) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_CHARS or not key.isprintable():
        raise ValidationError(f"an idempotency key is 1-{MAX_IDEMPOTENCY_KEY_CHARS} printable characters",
                              details={"field": "idempotencyKey"})
    return key


def validate_max_output_tokens(value: object) -> int | None:
    """A caller's bound on the reply's tokens (the OpenAI front door's ``max_tokens``): a whole number >= 1.

    The agent's ``max_output_tokens`` still applies: the reply is bounded by the lower of the two.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError("max_output_tokens is a whole number of at least 1",
                              details={"field": "maxOutputTokens"})
    return value


MAX_CONTEXT_TURNS = 256


def validate_context(context: object) -> tuple[ChatTurn, ...]:
    """Earlier turns a caller holds itself (the OpenAI front door's stateless apps): user and assistant
    ``ChatTurn``s with text, at most ``MAX_CONTEXT_TURNS``. The provider sees them before the session's
    history; they are billed as input like any history, and not stored."""
    if context is None:
        return ()
    if not isinstance(context, (list, tuple)) or len(context) > MAX_CONTEXT_TURNS:
        raise ValidationError(f"context is a list of at most {MAX_CONTEXT_TURNS} turns", details={"field": "context"})
    turns = []
    for index, turn in enumerate(context):
        if not isinstance(turn, ChatTurn) or turn.role not in ("user", "assistant"):
            raise ValidationError("each context turn is a user or assistant ChatTurn",
                                  details={"field": f"context[{index}]"})
        try:
            turns.append(ChatTurn(turn.role, validate_content(turn.content)))
        except ValidationError as exc:
            raise ValidationError(exc.message, details={"field": f"context[{index}]"}) from exc
    return tuple(turns)


def request_fingerprint(*parts: object) -> str:
    """Identifies 'the same request' for idempotency: same session, channel and input."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass")).hexdigest()


def reply_to_record(reply: Reply) -> str:
    """Lossless JSON of a reply for its idempotency record (microseconds, exact decimals)."""
    return orjson.dumps(reply.model_dump(), default=_exact_json, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()


def reply_from_record(text: str) -> Reply:
    return Reply.model_validate(json.loads(text))


def _exact_json(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot store a {type(value).__name__}")

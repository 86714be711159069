"""The OpenAI chat completions wire: its request, its answers, its chunks and its errors.

Apps written against the official ``openai`` SDK reach the gateway through
``/v1/chat/completions`` (routes_openai.py); this module holds everything
about the shapes that SDK sends and expects, and nothing about agents or
sessions:

- ``ChatCompletionRequest``: the request as the SDK sends it, validated
  strictly (a type the OpenAPI document calls wrong is refused, never
  coerced). Parameters that would change what an answer means and that the
  gateway cannot honour (``n`` > 1, ``tools``, ``functions``, JSON output,
  logprobs, audio) are refused with a 400 that names them. ``max_tokens``
  (or ``max_completion_tokens``) bounds the reply below the agent's own
  ``maxOutputTokens``, and a reply that reaches the bound finishes with
  ``length``; parameters that only tune sampling (``temperature``,
  ``top_p``, ``stop``...) and keys it does not know are accepted and
  ignored: the agent's settings apply.
- ``completion`` / ``chunk`` builders for the answer and its stream, with the
  gateway's own metadata under ``vbgateway`` (the SDK keeps unknown fields).
- ``openai_error``: OpenAI's ``{"error": {message, type, param, code}}``
  with the gateway's code in lower case as ``code`` (plus ``details`` and
  ``requestId``, so nothing the /v1 envelope says is lost).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from starlette.responses import Response

from ..errors import GatewayError, ValidationError
from ..message_input import MAX_CONTEXT_TURNS
from ..models import Agent, Reply
from ..providers.base import ChatTurn
from ..tenant import MAX_CUSTOMER_ID_CHARS
from .constraints import MAX_CONTENT_CHARS, TEXT
from .envelope import retry_after, visible_error

__all__ = ["CHUNK", "COMPLETION", "ChatCompletion", "ChatCompletionRequest", "ChatMessage", "CompletionChoice",
           "CompletionMessage", "CompletionUsage", "ModelList", "ModelObject", "OpenAIErrorResponse", "ResponseFormat",
           "TextPart",
           "chunk", "completion", "done_event", "earlier_turns", "error_type", "finish_reason", "gateway_metadata",
           "last_user_text", "model_object",
           "openai_error", "openai_error_response", "usage"]

COMPLETION, CHUNK = "chat.completion", "chat.completion.chunk"
MAX_MESSAGES = 10_000
MAX_MODEL_CHARS = 300
_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 402: "insufficient_quota",
          403: "permission_error", 404: "invalid_request_error", 409: "invalid_request_error",
          413: "invalid_request_error", 429: "rate_limit_error"}


def _whole(value: Any) -> Any:
    """1.0 as 1: JSON Schema's ``integer`` is any whole number, and strict validation would refuse it."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = Annotated[int, BeforeValidator(_whole)]
PositiveWhole = Annotated[int, Field(ge=1), BeforeValidator(_whole)]
OnlyOne = Annotated[int, Field(ge=1, le=1), BeforeValidator(_whole)]


class _Strict(BaseModel):
    """Types exactly as the document states them; unknown keys kept (and ignored), as OpenAI's SDKs add new ones."""

    model_config = ConfigDict(strict=True, extra="allow")


MessageText = Annotated[str, Field(max_length=MAX_CONTENT_CHARS, pattern=TEXT)]


class TextPart(_Strict):
    """One part of a message's content array; only ``text`` parts can be sent on (checked on the last message)."""

    type: str = Field(min_length=1, max_length=64)
    text: MessageText | None = None


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: MessageText | list[TextPart] | None = None
    name: str | None = Field(default=None, max_length=256)


class StreamOptions(_Strict):
    include_usage: bool | None = None


class ResponseFormat(_Strict):
    type: Literal["text"] = Field(description="Only text: JSON modes are not supported.")


def _unsupported(why: str) -> Any:
    return Field(default=None, description=f"Not supported: {why}. Only null (or an empty list) is accepted.",
                 json_schema_extra={"maxItems": 0})


class ChatCompletionRequest(_Strict):
    """POST /v1/chat/completions. ``model`` names an agent; the last message is the user's turn that is sent."""

    model: str = Field(min_length=1, max_length=MAX_MODEL_CHARS,
                       description="An agent: its id (`agt_...`) or `agent:<name>`.")
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES,
                                        description="The conversation; its last message must be the user's, "
                                                    "with text content (a string or text parts).")
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, json_schema_extra={"minLength": 1, "maxLength": MAX_CUSTOMER_ID_CHARS,
                                                               "pattern": TEXT},
                             description="The end user: the customer id of a session this request opens.")
    n: OnlyOne | None = Field(default=None, description="Only 1: an agent gives one reply.")
    temperature: float | None = Field(default=None, ge=0, le=2, description="Accepted and ignored.")
    top_p: float | None = Field(default=None, ge=0, le=1, description="Accepted and ignored.")
    max_tokens: PositiveWhole | None = Field(default=None, description="The most tokens the reply may hold; the "
                                                                   "agent's maxOutputTokens bounds it too (the "
                                                                   "lower applies).")
    max_completion_tokens: PositiveWhole | None = Field(default=None, description="As max_tokens (with both, "
                                                                                 "the lower applies).")
    presence_penalty: float | None = Field(default=None, ge=-2, le=2, description="Accepted and ignored.")
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2, description="Accepted and ignored.")
    stop: str | list[str] | None = Field(default=None, description="Accepted and ignored.")
    seed: WholeNumber | None = Field(default=None, description="Accepted and ignored.")
    logprobs: Literal[False] | None = Field(default=None, description="Only false: no log probabilities.")
    response_format: ResponseFormat | None = None
    tools: list[Any] | None = _unsupported("the agent's enabled tools apply")
    functions: list[Any] | None = _unsupported("the agent's enabled tools apply")

    def output_bound(self) -> int | None:
        """The bound the request puts on its reply's tokens (``max_tokens``, ``max_completion_tokens``), if any."""
        given = [n for n in (self.max_tokens, self.max_completion_tokens) if n is not None]
        return min(given) if given else None

    @field_validator("tools", "functions")
    @classmethod
    def _no_tools(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise ValueError("tools and functions are not supported here: the agent's enabled tools apply")
        return value


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class CompletionMessage(_Open):
    role: Literal["assistant"]
    content: str
    refusal: None = None


class CompletionChoice(_Open):
    index: int
    message: CompletionMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class CompletionUsage(_Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(_Open):
    """A non-streamed answer; ``vbgateway`` holds requestId, sessionId, providerUsed, costUsd, replayed..."""

    id: str = Field(pattern="^chatcmpl-")
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[CompletionChoice]
    usage: CompletionUsage
    vbgateway: dict[str, Any]


class ModelObject(_Open):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    vbgateway: dict[str, Any] = Field(description="agentId, name, alias (agent:<name>), providers.")


class ModelList(_Open):
    object: Literal["list"]
    data: list[ModelObject]


class _ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None
    details: dict[str, Any] = Field(default_factory=dict, description="The gateway's details (e.g. retryAfterMs).")
    request_id: str | None = Field(default=None, alias="requestId")


class OpenAIErrorResponse(BaseModel):
    """OpenAI's error shape; ``code`` is the gateway's code in lower case."""

    error: _ErrorBody


def _refused(param: str, message: str, code: str = "unsupported_parameter") -> GatewayError:
    return ValidationError(message, details={"field": param, "openaiCode": code})


def earlier_turns(request: ChatCompletionRequest) -> tuple[ChatTurn, ...]:
    """The conversation before the last message, for a request that opens a session: its user and
    assistant turns with text, shown to the agent's provider before the new message.

    What an agent cannot be shown is left out, not refused: ``system`` and
    ``developer`` messages (the agent's system prompt is the one that applies),
    tool and function turns, turns without text, and parts that are not text.
    Only the last ``MAX_CONTEXT_TURNS`` turns are kept (longer conversations
    continue with ``X-Session-Id``).
    """
    turns = []
    for message in request.messages[:-1]:
        if message.role not in ("user", "assistant"):
            continue
        content = message.content
        if isinstance(content, list):
            content = "\n".join(part.text for part in content if part.type == "text" and part.text)
        if content and content.strip():
            turns.append(ChatTurn(message.role, content))
    return tuple(turns[-MAX_CONTEXT_TURNS:])


def _text_of(message: ChatMessage, where: str) -> str:
    content = message.content
    if isinstance(content, list):
        others = sorted({part.type for part in content if part.type != "text"})
        if others:
            raise _refused(f"{where}.content", f"only text content parts are supported (got {', '.join(others)})")
        content = "\n".join(part.text or "" for part in content)
    if not content or not content.strip():
        raise _refused(f"{where}.content", "the message has no text", "invalid_value")
    return content


def last_user_text(request: ChatCompletionRequest) -> str:
    """The text the request sends: its last message, which must be the user's, as one string.

    Text parts are joined with newlines; any other part (images, audio,
    files) is refused, as the gateway's agents take text.
    """
    last = request.messages[-1]
    where = f"messages[{len(request.messages) - 1}]"
    if last.role != "user":
        raise _refused(f"{where}.role", f"the last message must be the user's (got role {last.role!r})",
                       "invalid_value")
    content = _text_of(last, where)
    if len(content) > MAX_CONTENT_CHARS:
        raise _refused(f"{where}.content", f"a message is limited to {MAX_CONTENT_CHARS} characters",
                       "string_above_max_length")
    return content


# ---------------------------------------------------------------------- answers
def _unix(moment: datetime) -> int:
    return int(moment.timestamp())


def usage(reply: Reply) -> dict[str, int]:
    tokens = reply.metadata.usage
    return {"prompt_tokens": tokens.tokens_in, "completion_tokens": tokens.tokens_out,
            "total_tokens": tokens.tokens_in + tokens.tokens_out}


def gateway_metadata(reply: Reply) -> dict[str, Any]:
    """What the gateway adds to an answer: who answered, what it cost, where the conversation is kept."""
    meta = reply.metadata
    return {"requestId": meta.request_id, "sessionId": reply.message.session_id, "messageId": reply.message.id,
            "agentId": meta.agent_id, "providerUsed": meta.provider_used, "fallbackUsed": meta.fallback_used,
            "costUsd": float(meta.usage.cost_usd), "replayed": meta.idempotency.replayed}


def finish_reason(reply: Reply, bound: int) -> Literal["stop", "length"]:
    """``length`` when the reply reached ``bound``, the most tokens it could hold; else ``stop``."""
    return "length" if reply.metadata.usage.tokens_out >= bound else "stop"


def completion(reply: Reply, model: str, bound: int) -> dict[str, Any]:
    """The ``chat.completion`` of a reply; its id comes from the request that made it (a replay keeps it).

    ``bound``: the most tokens the reply could hold (``finish_reason``)."""
    return {"id": f"chatcmpl-{reply.metadata.request_id}", "object": COMPLETION,
            "created": _unix(reply.message.created_at), "model": model, "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.message.content,
                                                 "refusal": None},
                         "logprobs": None, "finish_reason": finish_reason(reply, bound)}],
            "usage": usage(reply), "vbgateway": gateway_metadata(reply)}


def chunk(completion_id: str, created: int, model: str, delta: dict[str, Any] | None,
          finish_reason: str | None = None, *, with_usage: bool = False, extra: dict[str, Any] | None = None) -> bytes:
    """One ``data:`` event of a stream; ``delta`` None is the usage chunk (no choices)."""
    payload: dict[str, Any] = {"id": completion_id, "object": CHUNK, "created": created, "model": model,
                               "system_fingerprint": None,
                               "choices": [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                                                     "finish_reason": finish_reason}]}
    if with_usage:
        payload["usage"] = None
    if extra:
        payload.update(extra)
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def done_event() -> bytes:
    return b"data: [DONE]\n\n"


def model_object(agent: Agent, owner: str) -> dict[str, Any]:
    """An agent as an OpenAI model: ``id`` is the agent's id (unique and stable across renames)."""
    return {"id": agent.id, "object": "model", "created": _unix(agent.created_at), "owned_by": owner,
            "vbgateway": {"agentId": agent.id, "name": agent.name, "alias": f"agent:{agent.name}",
                          "primaryProvider": agent.primary_provider, "fallbackProvider": agent.fallback_provider}}


# ---------------------------------------------------------------------- errors
def error_type(status: int) -> str:
    return _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def openai_error(request_id: str, exc: Exception) -> tuple[int, dict[str, Any]]:
    """(status, body) of an error in OpenAI's shape; internal failures are not described (``visible_error``)."""
    exc = visible_error(request_id, exc)
    status = exc.http_status
    details = dict(exc.details)
    code = str(details.pop("openaiCode", exc.code.lower()))
    param = details.get("field")
    errors = details.get("errors")
    if param is None and isinstance(errors, list) and errors and isinstance(errors[0], dict):
        param = errors[0].get("field")
    return status, {"error": {"message": exc.message, "type": error_type(status),
                              "param": param if isinstance(param, str) else None, "code": code,
                              "details": details, "requestId": request_id}}


def openai_error_response(request_id: str, exc: GatewayError, headers: dict[str, str] | None = None) -> Response:
    status, body = openai_error(request_id, exc)
    all_headers = {**(retry_after(exc) or {}), **(headers or {})}
    return Response(orjson.dumps(body, default=str), status_code=status, headers=all_headers,
                    media_type="application/json")

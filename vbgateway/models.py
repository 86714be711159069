"""The gateway's data, as pydantic models with the /v1 wire shape built in.

Python code uses snake_case attributes; ``model_dump(by_alias=True,
mode="json")`` gives the camelCase JSON of api-contract.md: timestamps as
``2026-01-31T12:00:00.000Z`` and money as a JSON number. In Python, money
stays a ``Decimal``.

Input models (``AgentSpec``, ``AgentPatch``) validate what callers send;
output models are built by the gateway from trusted rows.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "MAX_CONTENT_CHARS",
    "MAX_OUTPUT_TOKENS_LIMIT",
    "Agent",
    "AgentPatch",
    "AgentSpec",
    "ApiKeyInfo",
    "Attempt",
    "Channel",
    "Idempotency",
    "Message",
    "Money",
    "Pricing",
    "ProviderCallEvent",
    "RateLimit",
    "Reply",
    "ReplyMetadata",
    "Session",
    "Tenant",
    "Timestamp",
    "Transcript",
    "TranscriptMessage",
    "Usage",
    "UsageEvent",
    "VoiceReply",
    "iso_timestamp",
]

MAX_CONTENT_CHARS = 32_000
DEFAULT_EVENTS_LIMIT = 200  # usage events per page, unless asked otherwise
MAX_EVENTS_LIMIT = 1000
MAX_TOOLS = 32
DEFAULT_MAX_OUTPUT_TOKENS = 1024  # what a reply may hold at most: it bounds what the reply can cost
MAX_OUTPUT_TOKENS_LIMIT = 32_768
_TOOL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_FORBIDDEN_CHARS = re.compile(r"[\x00\ud800-\udfff]")


def iso_timestamp(value: datetime) -> str:
    """``2026-01-31T12:00:00.000Z``: UTC with milliseconds, as the contract writes it."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


Timestamp = Annotated[datetime, PlainSerializer(iso_timestamp, return_type=str, when_used="json")]
Channel = Literal["chat", "voice", "openai"]  # openai: the OpenAI-compatible front door (/v1/chat/completions)
Money = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


def clean_text(value: str) -> str:
    """Reject characters that cannot be stored or encoded safely (NUL, lone surrogates)."""
    if _FORBIDDEN_CHARS.search(value):
        raise ValueError("text contains a NUL character or an invalid unicode surrogate")
    return value


SafeText = Annotated[str, AfterValidator(clean_text)]


class WireModel(BaseModel):
    """Base: camelCase aliases on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class Tenant(WireModel):
    id: str
    name: str
    created_at: Timestamp


class RateLimit(WireModel):
    """Requests and tokens per minute (None: no limit of that kind); see governance/rate_limits.py."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


class ApiKeyInfo(WireModel):
    """A key as an operator sees it (never the key itself).

    ``status``: ``active``; ``grace`` (rotated, still accepted until
    ``expires_at``); ``expired``; ``revoked``. ``scopes`` lists what the key
    may do (governance/scopes.py).
    """

    id: str
    tenant_id: str
    prefix: str
    created_at: Timestamp
    revoked_at: Timestamp | None = None
    scopes: list[str] = []
    expires_at: Timestamp | None = None
    last_used_at: Timestamp | None = None
    rotated_at: Timestamp | None = None
    replaced_by: str | None = None
    rate_limit: RateLimit | None = None
    status: Literal["active", "grace", "expired", "revoked"] = "active"


class Agent(WireModel):
    id: str
    tenant_id: str = Field(exclude=True)
    name: str
    primary_provider: str
    fallback_provider: str | None
    system_prompt: str
    enabled_tools: list[str]
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    created_at: Timestamp
    updated_at: Timestamp


def _whole_number(value: Any) -> Any:
    """A whole number as JSON Schema's ``integer`` has it (100 or 100.0), never "100" or true (lax int takes both)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a whole number")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)
    return value


OutputTokens = Annotated[int, BeforeValidator(_whole_number), Field(ge=1, le=MAX_OUTPUT_TOKENS_LIMIT)]


def _no_fallback(value: Any) -> Any:
    return None if value in (None, "none", "") else value


class _AgentFields(BaseModel):
    """Field rules shared by create and update (the contract's validation list)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", str_strip_whitespace=False)

    @field_validator("name", check_fields=False)
    @classmethod
    def _name_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("name must not be blank")
        return value

    @field_validator("system_prompt", check_fields=False)
    @classmethod
    def _prompt_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("systemPrompt must not be empty")
        return value

    @field_validator("fallback_provider", mode="before", check_fields=False)
    @classmethod
    def _none_means_no_fallback(cls, value: Any) -> Any:
        return _no_fallback(value)

    @field_validator("enabled_tools", check_fields=False)
    @classmethod
    def _tool_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if len(value) > MAX_TOOLS:
            raise ValueError(f"at most {MAX_TOOLS} tools")
        for name in value:
            if not _TOOL_NAME.fullmatch(name):  # not match: "$" also matches before a final newline
                raise ValueError(f"tool names are 1-64 letters, digits, '_', '.', '-' starting with a letter: {name[:80]!r}")
        if len(set(value)) != len(value):
            raise ValueError("tool names must be unique")
        return value


class AgentSpec(_AgentFields):
    """What it takes to create an agent."""

    name: SafeText = Field(min_length=1, max_length=200)
    primary_provider: str = Field(min_length=1, max_length=64)
    fallback_provider: str | None = Field(default=None, max_length=64)
    system_prompt: SafeText = Field(min_length=1, max_length=MAX_CONTENT_CHARS)
    enabled_tools: list[str] = Field(default_factory=list)
    max_output_tokens: OutputTokens = Field(
        default=DEFAULT_MAX_OUTPUT_TOKENS,
        description=f"The most tokens a reply may hold (1-{MAX_OUTPUT_TOKENS_LIMIT}); it bounds what a reply can cost.")


class AgentPatch(_AgentFields):
    """A partial update: only the fields given change (``fallback_provider=None`` removes it)."""

    name: SafeText | None = Field(default=None, min_length=1, max_length=200)
    primary_provider: str | None = Field(default=None, min_length=1, max_length=64)
    fallback_provider: str | None = Field(default=None, max_length=64)
    system_prompt: SafeText | None = Field(default=None, min_length=1, max_length=MAX_CONTENT_CHARS)
    enabled_tools: list[str] | None = None
    max_output_tokens: OutputTokens | None = Field(
        default=None, description=f"The most tokens a reply may hold (1-{MAX_OUTPUT_TOKENS_LIMIT}).")


class Session(WireModel):
    id: str
    tenant_id: str = Field(exclude=True)
    agent_id: str
    customer_id: str | None
    status: str
    metadata: dict[str, Any]
    created_at: Timestamp
    last_activity_at: Timestamp


class Message(WireModel):
    id: str
    session_id: str
    role: Literal["user", "assistant"]
    content: str
    created_at: Timestamp


class Attempt(WireModel):
    """One call to one provider; ``retries`` is its index within that provider (0 = first try)."""

    provider: str
    status: Literal["ok", "failed", "skipped"]  # skipped: the provider's circuit breaker was open (no call)
    http_status: int | None
    latency_ms: int
    retries: int
    error_code: str | None = None


def _absent(value: object) -> bool:
    return value is None


class Pricing(WireModel):
    """The rates a reply was billed at.

    ``usdPer1kTokens`` is the contract's single rate, input and output alike.
    A provider that prices input and output apart also gives both rates, USD
    per 1,000,000 tokens (and its ``usdPer1kTokens`` is the higher one); for a
    single rate they are left out, as the contract's shape has them: both are
    ``usdPer1kTokens`` x 1000.
    """

    usd_per_1k_tokens: Money = Field(alias="usdPer1kTokens")
    usd_per_1m_input: Money | None = Field(default=None, alias="usdPer1mInput", exclude_if=_absent)
    usd_per_1m_output: Money | None = Field(default=None, alias="usdPer1mOutput", exclude_if=_absent)


class Usage(WireModel):
    tokens_in: int
    tokens_out: int
    cost_usd: Money
    pricing: Pricing


class Idempotency(WireModel):
    key: str | None
    replayed: bool


class ReplyMetadata(WireModel):
    agent_id: str
    provider_used: str
    primary_attempted: str
    fallback_attempted: str | None
    fallback_used: bool
    attempts: list[Attempt]
    usage: Usage
    idempotency: Idempotency
    request_id: str
    channel: Channel = Field(default="chat", exclude=True)


class Reply(WireModel):
    """The assistant's answer to one user message, with how it was obtained and billed."""

    message: Message
    metadata: ReplyMetadata


class VoiceReply(WireModel):
    """A voice turn: what we heard, the reply, and the reply spoken as WAV."""

    session_id: str
    transcript_text: str
    reply: Reply
    audio: bytes = Field(exclude=True, repr=False)
    audio_mime: str
    audio_duration_ms: int
    input_audio_duration_ms: int | None


class TranscriptMessage(WireModel):
    id: str
    role: Literal["user", "assistant"]
    content: str
    created_at: Timestamp


class ProviderCallEvent(WireModel):
    id: str
    type: Literal["provider_call"] = "provider_call"
    provider: str
    status: Literal["ok", "failed", "skipped"]
    latency_ms: int
    created_at: Timestamp


class Transcript(WireModel):
    session: Session
    messages: list[TranscriptMessage]
    events: list[ProviderCallEvent]


class UsageEvent(WireModel):
    id: str
    tenant_id: str = Field(exclude=True)
    session_id: str
    agent_id: str
    provider: str
    channel: Channel
    tokens_in: int
    tokens_out: int
    cost_usd: Money
    created_at: Timestamp
    request_id: str

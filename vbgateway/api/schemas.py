"""Request bodies and response envelopes of the /v1 contract, as pydantic models.

The core models (``Agent``, ``Session``, ``Reply``, ``Transcript``) already
serialise to the contract's camelCase shape, so they are reused here; this
module only adds the envelopes around them and the shapes that have no core
model (voice, usage, errors). Handlers serialise these models themselves,
and FastAPI reads them to write an OpenAPI document that matches the wire.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ..governance.budget_values import Budget
from ..governance.scopes import SCOPES
from ..models import Agent, Channel, RateLimit, ReplyMetadata, Session, Tenant, Timestamp
from ..tenant import MAX_CUSTOMER_ID_CHARS, MAX_METADATA_BYTES
from .constraints import MAX_CONTENT_CHARS, NON_BLANK_TEXT, TEXT

__all__ = [
    "AgentEnvelope",
    "AgentList",
    "AgentUsage",
    "AssistantMessage",
    "ErrorBody",
    "ErrorResponse",
    "HealthDatabase",
    "HealthResponse",
    "MeKey",
    "MeRateLimits",
    "MeResponse",
    "MessageBody",
    "MonthCost",
    "MonthlyResponse",
    "ProviderPrice",
    "ProviderUsage",
    "RollupForecast",
    "RollupRange",
    "RollupResponse",
    "RollupTotals",
    "SessionBody",
    "SessionEnvelope",
    "UsageEventRow",
    "UsageEventsResponse",
    "VoiceAudio",
    "VoiceMetadata",
    "VoiceResponse",
]


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


# ---------------------------------------------------------------------- requests
class SessionBody(_Wire):
    """POST /v1/sessions. The core checks the customer id and metadata; the schema states its rules."""

    agent_id: str = Field(min_length=1, max_length=100)
    customer_id: str | None = Field(default=None, json_schema_extra={
        "minLength": 1, "maxLength": MAX_CUSTOMER_ID_CHARS, "pattern": TEXT})
    metadata: dict[str, Any] | None = Field(
        default=None, description=f"Any JSON object, at most {MAX_METADATA_BYTES} bytes as UTF-8 JSON.")


class MessageBody(_Wire):
    """POST /v1/sessions/{sessionId}/messages: a user turn (``role`` may be omitted).

    ``content`` is checked by the core (``message_input.validate_content``); the schema states its rules.
    """

    role: Literal["user"] = "user"
    content: str = Field(json_schema_extra={"minLength": 1, "maxLength": MAX_CONTENT_CHARS, "pattern": NON_BLANK_TEXT},
                         description="The user's words: not blank, no NUL character.")


# ---------------------------------------------------------------------- responses
class ErrorBody(_Wire):
    code: str = Field(examples=["AGENT_NOT_FOUND"])
    message: str
    details: dict[str, Any]
    request_id: str


class ErrorResponse(_Wire):
    """The envelope of every non-2xx answer."""

    error: ErrorBody


class HealthDatabase(_Wire):
    status: Literal["ok"]
    schema_version: int
    pending_records: int = Field(description="Committed records (safe in the journal) not yet applied to DuckDB.")


class HealthResponse(_Wire):
    status: Literal["ok"]
    database: HealthDatabase


class ProviderPrice(_Wire):
    usd_per_1k_tokens: float = Field(alias="usdPer1kTokens", description="the single rate per 1,000 tokens; for "
                                     "input and output priced apart, the higher of the two")
    usd_per_1m_input: float | None = Field(default=None, alias="usdPer1mInput",
                                           description="USD per 1,000,000 input tokens, now; given only when input "
                                                       "and output are priced apart")
    usd_per_1m_output: float | None = Field(default=None, alias="usdPer1mOutput",
                                            description="USD per 1,000,000 output tokens, now; given only when input "
                                                        "and output are priced apart")


class MeKey(_Wire):
    """The key of this request: what it may do and until when."""

    id: str = Field(examples=["key_0abc"])
    scopes: list[str] = Field(description="What the key may do; each /v1 operation names the scope it needs.",
                              json_schema_extra={"items": {"type": "string", "enum": list(sorted(SCOPES))}})
    expires_at: Timestamp | None = Field(description="From then on the key is refused (401); null: never. "
                                                     "A rotated key's end of grace.")


class MeRateLimits(_Wire):
    """The limits that apply to this key's sends (null: none): the tenant's and the key's own, both enforced."""

    tenant: RateLimit | None
    key: RateLimit | None


class MeResponse(_Wire):
    tenant: Tenant
    pricing: dict[str, ProviderPrice]
    key: MeKey
    rate_limits: MeRateLimits
    budget: Budget | None = Field(default=None, description="The tenant's monthly budget this UTC month; "
                                                            "null when it has none.")


class AgentEnvelope(_Wire):
    agent: Agent


class AgentList(_Wire):
    agents: list[Agent]


class SessionEnvelope(_Wire):
    session: Session


class AssistantMessage(_Wire):
    id: str
    content: str
    created_at: str


class VoiceAudio(_Wire):
    mime_type: str = Field(examples=["audio/wav"])
    base64: str
    duration_ms: int


class VoiceMetadata(ReplyMetadata):
    """The messages metadata plus the channel and the uploaded audio's duration."""

    channel: Literal["chat", "voice"] = "voice"  # shown on the wire here
    audio_duration_ms: int | None


class VoiceResponse(_Wire):
    session_id: str
    transcript_text: str
    assistant: AssistantMessage
    audio: VoiceAudio
    metadata: VoiceMetadata


class RollupRange(BaseModel):
    from_: str = Field(alias="from", examples=["2026-01-01"])
    to: str = Field(examples=["2026-01-31"])


class RollupTotals(_Wire):
    sessions: int
    messages: int
    tokens_in: int
    tokens_out: int
    tokens_total: int
    cost_usd: float


class ProviderUsage(_Wire):
    provider: str
    sessions: int
    tokens_in: int
    tokens_out: int
    tokens_total: int
    cost_usd: float


class AgentUsage(_Wire):
    agent_id: str
    agent_name: str
    sessions: int
    tokens_total: int
    cost_usd: float


class RollupForecast(_Wire):
    """The month of ``to``: spend so far (exact) and at this pace by its end (point and 80% interval, to the cent).

    Day-of-week means of the last eight weeks' daily spend, with a residual
    bootstrap for the interval (docs/analytics.md: method, assumptions, coverage).
    """

    month: str = Field(examples=["2026-01"])
    as_of: str = Field(description="the day the forecast is made on (UTC): earlier days are history",
                       examples=["2026-01-14"])
    month_to_date_usd: float
    point_usd: float
    low_usd: float
    high_usd: float
    interval: float = Field(description="the share of month ends the interval is meant to hold", examples=[0.8])
    history_days: int = Field(description="days of history the forecast learnt from (0: the figures are the "
                                          "month to date)")
    remaining_days: int = Field(description="days of the month still forecast, the current one included")
    method: str


class RollupResponse(_Wire):
    range: RollupRange
    totals: RollupTotals
    by_provider: list[ProviderUsage]
    top_agents_by_cost: list[AgentUsage]
    budget: Budget | None = Field(default=None, description="Only for a tenant with a budget: its use in the "
                                                            "current UTC month (whatever the range).")
    forecast: RollupForecast | None = Field(default=None, description="only with `forecast=true`")


class UsageEventRow(_Wire):
    id: str
    session_id: str
    agent_id: str
    provider: str
    channel: Channel
    tokens_in: int
    tokens_out: int
    cost_usd: float
    created_at: str
    request_id: str


class UsageEventsResponse(_Wire):
    events: list[UsageEventRow]
    count: int
    limit: int


class MonthCost(BaseModel):
    """``month`` plus one cost column (USD) per provider."""

    model_config = ConfigDict(extra="allow")
    month: str = Field(examples=["2026-01"])


class MonthlyResponse(_Wire):
    monthly: list[MonthCost]

"""Turning gateway results into the contract's JSON, and nothing more.

Models already know their wire form (``model_dump(by_alias=True, mode="json")``);
what needs writing down is the voice shape (which nests the reply
differently from ``VoiceReply``) and the usage tables, which the analytics
layer returns as DataFrames with exact decimals.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

import pandas as pd
from pydantic import BaseModel
from starlette.responses import Response

from ..analytics import Rollup, SpendForecast
from ..gateway import Gateway
from ..governance.budget_values import Budget
from ..models import RateLimit, VoiceReply, iso_timestamp
from ..tenant import TenantClient

__all__ = ["budget_payload", "forecast_payload", "me_governance", "me_payload", "model_response", "monthly_payload",
           "rollup_payload",
           "usage_events_payload", "voice_payload"]


def _money(value: Decimal | float | None) -> float:
    """USD as a JSON number: exact decimals end at the wire, as the contract asks."""
    if value is None or (not isinstance(value, Decimal) and pd.isna(value)):
        return 0.0
    return float(value)


def _int(value: float | None) -> int:
    return 0 if value is None or pd.isna(value) else int(value)


def _rows(frame: pd.DataFrame) -> Iterable[dict[str, Any]]:
    return cast("list[dict[str, Any]]", frame.to_dict("records"))


def me_payload(gw: Gateway, tenant_wire: dict[str, Any]) -> dict[str, Any]:
    """The tenant and, per provider, the rates in effect now (per 1M input and output where they differ)."""
    now = gw.clock.now()
    pricing: dict[str, dict[str, float]] = {}
    for name in sorted(gw.providers):
        rates = gw.prices.rates_at(name, now)
        pricing[name] = {"usdPer1kTokens": _money(rates.usd_per_1k_tokens)}
        if not rates.single:
            pricing[name].update(usdPer1mInput=_money(rates.usd_per_1m_input),
                                 usdPer1mOutput=_money(rates.usd_per_1m_output))
    return {"tenant": tenant_wire, "pricing": pricing}


def me_governance(gw: Gateway, tenant: TenantClient) -> dict[str, Any]:
    """``key`` (id, scopes, expiry) and ``rateLimits`` (the tenant's and the key's) of ``GET /v1/me``."""
    def wire(limit: RateLimit | None) -> dict[str, Any] | None:
        return None if limit is None else limit.model_dump(by_alias=True)

    key_id = tenant.key_id
    expires_at = tenant.expires_at
    return {"key": {"id": key_id, "scopes": sorted(tenant.scopes),
                    "expiresAt": None if expires_at is None else iso_timestamp(expires_at)},
            "rateLimits": {"tenant": wire(gw.rate_limits.limit_of(tenant.id)),
                           "key": wire(None if key_id is None else gw.rate_limits.limit_of(key_id))}}


def budget_payload(budget: Budget | None) -> dict[str, Any] | None:
    """A tenant's budget this month (``GET /v1/me``, ``GET /v1/usage/rollup``): null without one."""
    return None if budget is None else budget.model_dump(by_alias=True, mode="json")


def voice_payload(voice: VoiceReply) -> dict[str, Any]:
    reply = voice.reply.model_dump(by_alias=True, mode="json")
    message = reply["message"]
    metadata = {**reply["metadata"], "channel": "voice", "audioDurationMs": voice.input_audio_duration_ms}
    return {
        "sessionId": voice.session_id,
        "transcriptText": voice.transcript_text,
        "assistant": {"id": message["id"], "content": message["content"], "createdAt": message["createdAt"]},
        "audio": {"mimeType": voice.audio_mime, "base64": base64.b64encode(voice.audio).decode("ascii"),
                  "durationMs": voice.audio_duration_ms},
        "metadata": metadata,
    }


def rollup_payload(rollup: Rollup) -> dict[str, Any]:
    t = rollup.totals
    return {
        "range": {"from": rollup.start.isoformat(), "to": rollup.end.isoformat()},
        "totals": {"sessions": _int(t["sessions"]), "messages": _int(t["messages"]), "tokensIn": _int(t["tokens_in"]),
                   "tokensOut": _int(t["tokens_out"]), "tokensTotal": _int(t["tokens_total"]),
                   "costUsd": _money(t["cost_usd"])},
        "byProvider": [{"provider": str(r["provider"]), "sessions": _int(r["sessions"]),
                        "tokensIn": _int(r["tokens_in"]), "tokensOut": _int(r["tokens_out"]),
                        "tokensTotal": _int(r["tokens_total"]), "costUsd": _money(r["cost_usd"])}
                       for r in _rows(rollup.by_provider)],
        "topAgentsByCost": [{"agentId": str(r["agent_id"]), "agentName": str(r["agent_name"]),
                             "sessions": _int(r["sessions"]), "tokensTotal": _int(r["tokens_total"]),
                             "costUsd": _money(r["cost_usd"])} for r in _rows(rollup.top_agents)],
    }


def forecast_payload(forecast: SpendForecast) -> dict[str, Any]:
    """``RollupForecast``: a month-end forecast on the wire (money as numbers, the day it was made on)."""
    return {"month": forecast.month, "asOf": forecast.as_of.date().isoformat(),
            "monthToDateUsd": _money(forecast.month_to_date_usd), "pointUsd": _money(forecast.point_usd),
            "lowUsd": _money(forecast.low_usd), "highUsd": _money(forecast.high_usd), "interval": forecast.interval,
            "historyDays": forecast.history_days, "remainingDays": forecast.remaining_days, "method": forecast.method}


def _timestamp(value: object) -> str:
    if isinstance(value, datetime):
        return iso_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def usage_events_payload(frame: pd.DataFrame, limit: int) -> dict[str, Any]:
    events = [{"id": str(r["id"]), "sessionId": str(r["session_id"]), "agentId": str(r["agent_id"]),
               "provider": str(r["provider"]), "channel": str(r["channel"]), "tokensIn": _int(r["tokens_in"]),
               "tokensOut": _int(r["tokens_out"]),
               "costUsd": _money(r["cost_usd"]), "createdAt": _timestamp(r["created_at"]),
               "requestId": str(r["request_id"])} for r in _rows(frame)]
    return {"events": events, "count": len(events), "limit": limit}


def monthly_payload(frame: pd.DataFrame) -> dict[str, Any]:
    return {"monthly": [{k: (str(v) if k == "month" else _money(v)) for k, v in row.items()} for row in _rows(frame)]}


def model_response(model: BaseModel, status_code: int = 200) -> Response:
    """A model's camelCase JSON, serialised once by pydantic's Rust core."""
    return Response(model.model_dump_json(by_alias=True), status_code=status_code, media_type="application/json")

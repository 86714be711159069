"""The /v1 JSON back into what the embedded client returns: models, dataclasses, DataFrames.

Code written against ``TenantClient`` (the widgets, the reports, a user's
notebook) must run unchanged on the HTTP client, so every answer is rebuilt
into the same types: ``Agent`` and ``Session`` with the key's tenant id (the
wire leaves it out), ``VoiceReply`` from the voice shape, and the usage
tables as DataFrames with the embedded columns and dtypes.

Two things the wire cannot carry are restored as closely as it allows:
money travels as a JSON number and comes back as a ``Decimal`` with the
store's ten decimal places; timestamps travel with milliseconds, so they
come back truncated to the millisecond.
"""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..governance.budget_values import Budget
from ..governance.keys import KeyGrant
from ..governance.scopes import ALL_SCOPES
from ..models import Agent, Reply, Session, Transcript, VoiceReply

if TYPE_CHECKING:
    import pandas as pd

    from ..analytics import Rollup, SpendForecast

__all__ = ["agent", "budget", "events_frame", "forecast", "key_grant", "money", "monthly_frame", "reply", "rollup",
           "session", "transcript", "voice_reply"]

_STORE_PLACES = Decimal("1E-10")  # DECIMAL(.., 10): the store's money columns


def money(value: object) -> Decimal:
    """A JSON number of USD as the store's exact decimal (the shortest repr of the float, to 10 places)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"money must be a number, not {type(value).__name__}")
    return Decimal(repr(value)).quantize(_STORE_PLACES)


def key_grant(wire: object) -> KeyGrant:
    """``GET /v1/me``'s ``key`` as the embedded client's grant (for ``key_id``, ``scopes``, ``expires_at``).

    Only informative here: the server checks every request. A server that
    does not say (an older one) is taken to grant every scope.
    """
    if not isinstance(wire, dict):
        return KeyGrant(None, ALL_SCOPES)
    expires = wire.get("expiresAt")
    return KeyGrant(wire.get("id"), frozenset(wire.get("scopes") or ()),
                    datetime.fromisoformat(expires) if isinstance(expires, str) else None)


def agent(wire: dict[str, Any], tenant_id: str) -> Agent:
    return Agent.model_validate({**wire, "tenantId": tenant_id})


def session(wire: dict[str, Any], tenant_id: str) -> Session:
    return Session.model_validate({**wire, "tenantId": tenant_id})


def _exact_usage(metadata: dict[str, Any]) -> dict[str, Any]:
    usage = metadata["usage"]
    return {**metadata, "usage": {**usage, "costUsd": money(usage["costUsd"])}}


def reply(wire: dict[str, Any], channel: str = "chat") -> Reply:
    return Reply.model_validate({"message": wire["message"],
                                 "metadata": {**_exact_usage(wire["metadata"]), "channel": channel}})


def budget(wire: dict[str, Any] | None) -> Budget | None:
    """A budget's JSON (``GET /v1/me``) with its money back as the store's exact decimals."""
    if wire is None:
        return None
    exact = {key: money(wire[key]) for key in ("monthlyUsd", "spentUsd", "reservedUsd", "remainingUsd")}
    alerts = [{**alert, "spentUsd": money(alert["spentUsd"])} for alert in wire["alerts"]]
    return Budget.model_validate({**wire, **exact, "alertAt": [Decimal(repr(t)) for t in wire["alertAt"]],
                                  "alerts": [{**a, "threshold": Decimal(repr(a["threshold"]))} for a in alerts]})


def transcript(wire: dict[str, Any], tenant_id: str) -> Transcript:
    return Transcript.model_validate({**wire, "session": {**wire["session"], "tenantId": tenant_id}})


def voice_reply(wire: dict[str, Any]) -> VoiceReply:
    """The voice shape (``assistant``, ``audio``, metadata with the input duration) as ``VoiceReply``."""
    assistant, audio, metadata = wire["assistant"], wire["audio"], dict(wire["metadata"])
    input_ms = metadata.pop("audioDurationMs", None)
    message = {**assistant, "sessionId": wire["sessionId"], "role": "assistant"}
    return VoiceReply(session_id=wire["sessionId"], transcript_text=wire["transcriptText"],
                      reply=reply({"message": message, "metadata": metadata}, channel="voice"),
                      audio=base64.b64decode(audio["base64"]), audio_mime=audio["mimeType"],
                      audio_duration_ms=audio["durationMs"], input_audio_duration_ms=input_ms)


# ---------------------------------------------------------------------- usage tables
def _frame(rows: list[dict[str, Any]], columns: dict[str, str], dtypes: dict[str, Any]) -> pd.DataFrame:
    """A DataFrame of ``rows`` (wire keys) with ``columns`` (name -> wire key) in the embedded dtypes."""
    import pandas as pd

    data = {name: [row[key] for row in rows] for name, key in columns.items()}
    return pd.DataFrame(data, columns=list(columns)).astype(dtypes)


def _decimal_dtype(precision: int) -> Any:
    import pandas as pd
    import pyarrow as pa

    return pd.ArrowDtype(pa.decimal128(precision, 10))


def rollup(wire: dict[str, Any]) -> Rollup:
    from ..analytics import Rollup

    totals = wire["totals"]
    summary = {"sessions": totals["sessions"], "messages": totals["messages"], "tokens_in": totals["tokensIn"],
               "tokens_out": totals["tokensOut"], "tokens_total": totals["tokensTotal"],
               "cost_usd": money(totals["costUsd"])}
    exact = _decimal_dtype(38)
    providers = [{**r, "costUsd": money(r["costUsd"])} for r in wire["byProvider"]]
    agents = [{**r, "costUsd": money(r["costUsd"])} for r in wire["topAgentsByCost"]]
    by_provider = _frame(providers, {"provider": "provider", "sessions": "sessions", "tokens_in": "tokensIn",
                                     "tokens_out": "tokensOut", "tokens_total": "tokensTotal", "cost_usd": "costUsd"},
                         {"provider": "str", "sessions": "int64", "tokens_in": "int64", "tokens_out": "int64",
                          "tokens_total": "int64", "cost_usd": exact})
    top_agents = _frame(agents, {"agent_id": "agentId", "agent_name": "agentName", "sessions": "sessions",
                                 "tokens_total": "tokensTotal", "cost_usd": "costUsd"},
                        {"agent_id": "str", "agent_name": "str", "sessions": "int64", "tokens_total": "int64",
                         "cost_usd": exact})
    span = wire["range"]
    return Rollup(start=date.fromisoformat(span["from"]), end=date.fromisoformat(span["to"]), totals=summary,
                  by_provider=by_provider, top_agents=top_agents)


def forecast(wire: dict[str, Any], tenant_id: str) -> SpendForecast:
    """A rollup's ``forecast`` object as ``analytics.SpendForecast`` (made on the day ``asOf``)."""
    from ..analytics import SpendForecast

    made = date.fromisoformat(wire["asOf"])
    return SpendForecast(tenant_id=tenant_id, month=wire["month"], as_of=datetime(made.year, made.month, made.day,
                                                                                   tzinfo=UTC),
                         month_to_date_usd=money(wire["monthToDateUsd"]), point_usd=money(wire["pointUsd"]),
                         low_usd=money(wire["lowUsd"]), high_usd=money(wire["highUsd"]),
                         history_days=wire["historyDays"], remaining_days=wire["remainingDays"],
                         interval=wire["interval"], method=wire["method"])


def events_frame(wire: dict[str, Any], tenant_id: str) -> pd.DataFrame:
    """``usage_events``' columns: the wire's plus the key's tenant id."""
    import pandas as pd

    rows = [{**r, "tenantId": tenant_id, "costUsd": money(r["costUsd"]),
             "createdAt": pd.Timestamp(r["createdAt"])} for r in wire["events"]]
    columns = {"id": "id", "tenant_id": "tenantId", "session_id": "sessionId", "agent_id": "agentId",
               "provider": "provider", "channel": "channel", "tokens_in": "tokensIn", "tokens_out": "tokensOut",
               "cost_usd": "costUsd", "created_at": "createdAt", "request_id": "requestId"}
    text = dict.fromkeys(("id", "tenant_id", "session_id", "agent_id", "provider", "channel", "request_id"), "str")
    return _frame(rows, columns, {**text, "tokens_in": "int32", "tokens_out": "int32", "cost_usd": _decimal_dtype(24),
                                  "created_at": pd.DatetimeTZDtype("us", "UTC")})


def monthly_frame(wire: dict[str, Any]) -> pd.DataFrame:
    """``month`` plus one column of exact costs per provider, as ``analytics.monthly`` builds it."""
    import pandas as pd

    rows = wire["monthly"]
    providers = sorted({key for row in rows for key in row if key != "month"})
    table = pd.DataFrame({"month": pd.Series([row["month"] for row in rows], dtype="str")})
    for provider in providers:
        table[provider] = pd.Series([money(row.get(provider, 0.0)) for row in rows], dtype=object)
    return table

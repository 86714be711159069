"""Schemathesis hooks for ``test_api_schemathesis.py``: the rules JSON Schema cannot write down.

Loaded by the ``schemathesis`` command through ``SCHEMATHESIS_HOOKS``. The
OpenAPI document states every rule on a single value; four rules relate a
value to another one or to content, and the document can only describe them
in words. For requests generated as valid (positive mode), these hooks make
the generated values obey them, so that "valid per the document" means
"valid per the server":

- ``from`` is not after ``to`` (``to`` defaults to today, ``from`` to 29 days before ``to``);
- an agent's fallback provider differs from its primary (on PUT, from the stored one too);
- a voice upload is a real recording (here a short WAV);
- a chat completion names the agent the test made, and its last message is the user's, with text;
- a key is minted (``/v1/operator/api-keys``) for a tenant that exists: the one the test made
  (any other name is a documented 404, and only that would ever be tested);
- a tenant's budget and rate limit (``/v1/operator/tenants/{tenantId}/...``) are those of that
  tenant too (its id comes in ``SCHEMATHESIS_TENANT_ID``).

Requests generated as invalid are left alone: the server must refuse them.
Each hook changes a value to another valid one, so nothing is filtered away.
"""

from __future__ import annotations

import io
import os
import wave
from datetime import UTC, date, datetime
from typing import Any

import schemathesis

PROVIDERS = ("vendorA", "vendorB")
KNOWN_TENANT = "Schemathesis Corp"  # made by test_api_schemathesis.py
KNOWN_AGENT = "Schemathesis Agent"  # made by it too: the model chat completions name


def _wav(ms: int = 400, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x10\x00\xf0\xff" * (rate * ms // 2000))
    return buffer.getvalue()


WAV = _wav()


def _day(value: object) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _ordered_range(query: dict[str, Any]) -> None:
    first, last = _day(query.get("from")), _day(query.get("to"))
    last = last or datetime.now(UTC).date()
    if first is not None and first > last:
        query["from"], query["to"] = last.isoformat(), first.isoformat()


def _other(provider: str) -> str:
    return next(p for p in PROVIDERS if p != provider)


def _distinct_providers(body: dict[str, Any], partial: bool) -> None:
    primary, fallback = body.get("primaryProvider"), body.get("fallbackProvider")
    named_fallback = fallback in PROVIDERS
    if primary in PROVIDERS and named_fallback and fallback == primary:
        body["fallbackProvider"] = _other(primary)
    elif partial and primary in PROVIDERS and "fallbackProvider" not in body:
        body["fallbackProvider"] = _other(primary)  # the stored fallback may be this very provider
    elif partial and named_fallback and "primaryProvider" not in body:
        body["primaryProvider"] = _other(fallback)  # the stored primary may be this very provider


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    path, method = case.operation.path, case.operation.method.upper()
    if path.startswith("/v1/usage/") and isinstance(case.query, dict):
        _ordered_range(case.query)
    elif path.startswith("/v1/agents") and isinstance(case.body, dict):
        _distinct_providers(case.body, partial=method == "PUT")
    elif path == "/v1/operator/api-keys" and isinstance(case.body, dict) and "tenantName" in case.body:
        case.body["tenantName"] = KNOWN_TENANT
    elif path.startswith("/v1/operator/tenants/") and isinstance(case.path_parameters, dict):
        case.path_parameters["tenantId"] = os.environ["SCHEMATHESIS_TENANT_ID"]
    elif path.endswith("/voice") and isinstance(case.body, dict) and "audio" in case.body:
        case.body["audio"] = WAV
    elif path == "/v1/chat/completions" and isinstance(case.body, dict) and case.body.get("messages"):
        case.body["messages"][-1] = {"role": "user", "content": "hello"}  # the turn sent is the user's, in text
        case.body["model"] = f"agent:{KNOWN_AGENT}"  # an agent that exists (any other name is a documented 404)
    return case

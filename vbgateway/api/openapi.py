"""``/openapi.json``: FastAPI's document, completed until it states every rule the server enforces.

Generated clients and validators trust the document, so a request it calls
valid must not be refused and one it calls invalid must not be served.
FastAPI writes what it can see in the route signatures; this module adds what
it cannot:

- the X-API-Key scheme on every /v1 operation (X-Operator-Secret on /v1/operator/) (authentication runs in the
  route class, not in a FastAPI dependency);
- the provider names as an enum (they are the gateway's, known at run time);
- the core's rules for agent fields (``models.AgentSpec`` / ``AgentPatch``):
  text that is not blank and has no NUL, the tool-name pattern, at most 32
  unique tools, and which fields may be null;
- the voice form's ``audioDurationMs`` as an integer from 1 to an hour;
- query and header parameters that are absent or a string, never ``null``;
- ``X-Correlation-Id`` and ``X-Request-Id`` (accepted everywhere, the latter
  also on every answer); no 422 answers (this API answers 400);
- the key scope each operation needs (``x-required-scope``, and 403
  INSUFFICIENT_SCOPE), and 429 RATE_LIMIT_EXCEEDED with ``Retry-After`` on
  the sends that rate limits count (governance/).

Rules between two values (``from`` not after ``to``, a fallback different
from the primary) cannot be written in JSON Schema; the field descriptions
say them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ..governance.scopes import ROUTE_SCOPES
from ..models import MAX_CONTENT_CHARS, MAX_OUTPUT_TOKENS_LIMIT, MAX_TOOLS
from ..voice import MAX_AUDIO_DURATION_MS
from .constraints import (
    CORRELATION_ID,
    CORRELATION_ID_MAX,
    IDEMPOTENCY_KEY,
    MAX_IDEMPOTENCY_KEY_CHARS,
    NON_BLANK_TEXT,
    TOOL_NAME,
)
from .envelope import CIRCUIT_RETRY_AFTER, RETRY_AFTER_HEADER
from .routes_openai import complete_document
from .routes_operator import OPERATOR_PREFIX, OPERATOR_SCHEME
from .routing import API_KEY_SCHEME

__all__ = ["NO_FALLBACK", "build_document"]

NO_FALLBACK = ("none", "")  # besides null, what the core reads as "no fallback provider"
_REQUEST_ID_HEADER = {"description": "The id of this request (also in error bodies and the server log).",
                      "required": True, "schema": {"type": "string", "pattern": "^req_[0-9a-z]{20}$"}}
_CORRELATION_HEADER = {"description": "The request's X-Correlation-Id, repeated.",
                       "schema": {"type": "string", "pattern": CORRELATION_ID}}
_CORRELATION_PARAMETER = {
    "name": "X-Correlation-Id", "in": "header", "required": False,
    "description": "A client's own id for the request: repeated in the answer and written to the request log.",
    "schema": {"type": "string", "minLength": 1, "maxLength": CORRELATION_ID_MAX, "pattern": CORRELATION_ID}}
_REQUEST_ID_PARAMETER = {
    "name": "X-Request-Id", "in": "header", "required": False,
    "description": "The client's own id for this request, adopted when it is `req_` and 20 id characters "
                   "(it then names the reply and its usage event); any other value is ignored and a new id is made.",
    "schema": {"type": "string"}}


def build_document(app: FastAPI, providers: Iterable[str]) -> dict[str, Any]:
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    document["components"].setdefault("securitySchemes", {})["APIKeyHeader"] = API_KEY_SCHEME
    if any(path.startswith(OPERATOR_PREFIX) for path in document.get("paths", {})):
        document["components"]["securitySchemes"]["OperatorSecret"] = OPERATOR_SCHEME
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            _governance(method.upper(), path, operation)
            _complete_operation(path, operation)
    names = sorted(providers)
    for name, nullable in (("AgentSpec", ("fallbackProvider",)), ("AgentPatch", ("fallbackProvider",))):
        if name in schemas:
            schemas[name]["properties"] = _agent_fields(names, schemas[name]["properties"], nullable)
    _voice_form(document, schemas)
    complete_document(document)  # the OpenAI-compatible routes (routes_openai.py)
    return document


def _complete_operation(path: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    for response in responses.values():
        response.setdefault("headers", {}).update({"X-Request-Id": _REQUEST_ID_HEADER,
                                                   "X-Correlation-Id": _CORRELATION_HEADER})
    if path.startswith(OPERATOR_PREFIX):
        operation["security"] = [{"OperatorSecret": []}]
    elif path.startswith("/v1/"):
        operation["security"] = [{"APIKeyHeader": []}]
    parameters = operation.setdefault("parameters", [])
    for parameter in parameters:
        parameter["schema"] = _without_null(parameter["schema"])
        if parameter["in"] == "header" and parameter["name"] == "Idempotency-Key":
            parameter["schema"].update({"minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_CHARS,
                                        "pattern": IDEMPOTENCY_KEY})
    parameters.append(copy.deepcopy(_CORRELATION_PARAMETER))
    parameters.append(copy.deepcopy(_REQUEST_ID_PARAMETER))


_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
_RATE_LIMITED = ("/v1/sessions/{sessionId}/messages", "/v1/sessions/{sessionId}/voice")  # the sends limits count


def _governance(method: str, path: str, operation: dict[str, Any]) -> None:
    """The scope an operation needs (403 without it) and, on the sends, 429 with ``Retry-After``."""
    scope = ROUTE_SCOPES.get((method, path))
    if scope is None:
        return
    operation["x-required-scope"] = scope
    operation["description"] = f"{operation.get('description', '')}\n\nNeeds the key scope `{scope}`.".lstrip()
    responses = operation.setdefault("responses", {})
    responses["403"] = {"description": f"INSUFFICIENT_SCOPE: the key lacks `{scope}` (details.required)",
                        "content": copy.deepcopy(_ERROR_CONTENT)}
    if method == "POST" and path in _RATE_LIMITED:
        responses["429"] = {"description": "RATE_LIMIT_EXCEEDED: a rate limit of the tenant or the key; "
                                           "details.retryAfterMs and Retry-After say when to try again",
                            "headers": {"Retry-After": copy.deepcopy(RETRY_AFTER_HEADER)},
                            "content": copy.deepcopy(_ERROR_CONTENT)}
        if "503" in responses:
            responses["503"].setdefault("headers", {})["Retry-After"] = copy.deepcopy(CIRCUIT_RETRY_AFTER)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, null]`` as X (a parameter is absent or a string on the wire; it is never null)."""
    options = schema.get("anyOf")
    if not options:
        return schema
    kept = [option for option in options if option.get("type") != "null"]
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**kept[0], **rest} if len(kept) == 1 else {**rest, "anyOf": kept}


def _agent_fields(providers: list[str], generated: dict[str, Any], nullable: tuple[str, ...]) -> dict[str, Any]:
    def text(limit: int, what: str) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": limit, "pattern": NON_BLANK_TEXT,
                "description": f"{what}: not blank, no NUL character."}

    fields: dict[str, dict[str, Any]] = {
        "name": text(200, "1-200 characters"),
        "primaryProvider": {"type": "string", "enum": providers, "description": "A provider of this gateway."},
        "fallbackProvider": {"type": "string", "enum": [*providers, *NO_FALLBACK],
                             "description": 'Tried when the primary fails; must differ from the primary. '
                                            '"none", "" and null mean no fallback.'},
        "systemPrompt": text(MAX_CONTENT_CHARS, f"1-{MAX_CONTENT_CHARS} characters"),
        "enabledTools": {"type": "array", "maxItems": MAX_TOOLS, "uniqueItems": True,
                         "items": {"type": "string", "pattern": TOOL_NAME},
                         "description": f"At most {MAX_TOOLS} distinct names: a letter, then up to 63 letters, "
                                        "digits, '_', '.' or '-'."},
        "maxOutputTokens": {"type": "integer", "minimum": 1, "maximum": MAX_OUTPUT_TOKENS_LIMIT,
                            "description": "The most tokens a reply may hold (default 1024); it bounds what a reply "
                                           "can cost, and so what the budget reserves for it."},
    }
    completed = {}
    for name, schema in generated.items():
        field = {**fields.get(name, schema), "title": schema.get("title", name)}
        if "default" in schema:
            field["default"] = schema["default"]
        completed[name] = {"anyOf": [field, {"type": "null"}]} if name in nullable else field
    return completed


def _voice_form(document: dict[str, Any], schemas: dict[str, Any]) -> None:
    """The voice upload's form under a readable name, with ``audioDurationMs`` as the integer the core takes."""
    generated = next((name for name in schemas if name.startswith("Body_send_voice")), None)
    if generated is None:
        return
    form = schemas.pop(generated)
    form["title"] = "VoiceForm"
    form["properties"]["audioDurationMs"] = {
        "type": "integer", "minimum": 1, "maximum": MAX_AUDIO_DURATION_MS, "title": "Audiodurationms",
        "description": "The recording's length, when the audio's own header does not say it (WebM, Ogg, MP3)."}
    schemas["VoiceForm"] = form
    old, new = f"#/components/schemas/{generated}", "#/components/schemas/VoiceForm"
    for item in document.get("paths", {}).values():
        for operation in item.values():
            for content in operation.get("requestBody", {}).get("content", {}).values():
                if content.get("schema", {}).get("$ref") == old:
                    content["schema"]["$ref"] = new

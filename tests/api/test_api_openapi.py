"""/openapi.json states the rules the server enforces, and each pattern agrees with the check it describes.

Schemathesis (test_api_schemathesis.py) samples the document against the
server; these tests hold each pattern of ``vbgateway.api.constraints`` against
the core's own validator over many generated strings, including the white
space, NUL and latin-1 characters where a pattern and a check could part.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vbgateway.api.constraints import CORRELATION_ID, DAY, IDEMPOTENCY_KEY, NON_BLANK_TEXT, TEXT, TOOL_NAME
from vbgateway.errors import ValidationError
from vbgateway.message_input import validate_content, validate_idempotency_key
from vbgateway.models import AgentSpec, clean_text

TRICKY = st.sampled_from(["\x00", " ", "\t", "\n", "\x0b", "\x1c", "\x85", "\xa0", "\u2007", "\u3000", "\ufeff",
                          "\u200b", "a", "Z", "0", "_", ".", "-", "\xad", "\x7f", "é"])
TEXTS = st.lists(TRICKY | st.characters(codec="utf-8"), max_size=12).map("".join)
LATIN1 = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=20)


def _accepts(check, value) -> bool:
    try:
        check(value)
    except (ValidationError, ValueError):
        return False
    return True


@settings(max_examples=500, deadline=None)
@given(TEXTS)
def test_non_blank_text_is_what_the_core_takes_as_message_content(value):
    assert bool(re.fullmatch(NON_BLANK_TEXT, value)) == _accepts(validate_content, value)


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_text_is_what_the_core_takes_as_text(value):
    assert bool(re.fullmatch(TEXT, value)) == _accepts(clean_text, value)


def _tool_ok(name: str) -> bool:
    return _accepts(lambda n: AgentSpec(name="A", primary_provider="vendorA", system_prompt="x", enabled_tools=[n]),
                    name)


@settings(max_examples=300, deadline=None)
@given(st.lists(TRICKY | st.characters(max_codepoint=127), max_size=70).map("".join))
def test_tool_name_is_what_the_core_takes_as_a_tool(value):
    assert bool(re.fullmatch(TOOL_NAME, value)) == _tool_ok(value)


def test_a_tool_name_with_a_final_newline_is_refused_as_the_document_says():
    assert not _tool_ok("InvoiceLookup\n") and not re.fullmatch(TOOL_NAME, "InvoiceLookup\n")
    assert _tool_ok("a" * 64) and not _tool_ok("a" * 65)


@settings(max_examples=500, deadline=None)
@given(LATIN1 | st.integers(250, 260).map(lambda n: "k" * n))
def test_idempotency_key_pattern_is_what_the_core_takes_once_http_trimmed_the_value(value):
    value = value.strip(" \t")  # what reaches the server: HTTP drops white space around a field value
    assert bool(re.fullmatch(IDEMPOTENCY_KEY, value)) == _accepts(validate_idempotency_key, value or "")


def test_day_and_correlation_patterns():
    assert re.fullmatch(DAY, "2026-01-31") and not re.fullmatch(DAY, "20260131")
    assert not re.fullmatch(DAY, "2026-W05-6") and not re.fullmatch(DAY, "\u0662\u0660\u0662\u0666-01-31")
    assert re.fullmatch(CORRELATION_ID, "a") and re.fullmatch(CORRELATION_ID, "x" * 200)
    for bad in ("", " a", "a ", "x" * 201, "caf\u00e9", "tab\there"):
        assert not re.fullmatch(CORRELATION_ID, bad)


# ----------------------------------------------------------------------------- the document itself
@pytest.fixture(scope="module")
def spec(server) -> dict:
    import httpx

    return httpx.get(f"{server.url}/openapi.json").json()


def _operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_every_operation_states_its_headers_and_keys(spec):
    for path, method, operation in _operations(spec):
        names = {(p["in"], p["name"]) for p in operation["parameters"]}
        assert ("header", "X-Correlation-Id") in names, (method, path)
        assert all("anyOf" not in p["schema"] for p in operation["parameters"]), (method, path)
        assert all(r["headers"]["X-Request-Id"]["required"] for r in operation["responses"].values())
        assert "422" not in operation["responses"] and "400" in operation["responses"]
        assert ("security" in operation) is path.startswith("/v1/"), (method, path)


def test_agent_bodies_name_the_providers_and_the_core_rules(spec):
    schemas = spec["components"]["schemas"]
    create, patch = schemas["AgentSpec"]["properties"], schemas["AgentPatch"]["properties"]
    assert create["primaryProvider"]["enum"] == ["vendorA", "vendorB"]
    assert create["fallbackProvider"]["anyOf"] == [
        {**create["fallbackProvider"]["anyOf"][0], "enum": ["vendorA", "vendorB", "none", ""]}, {"type": "null"}]
    for fields in (create, patch):
        assert fields["name"]["pattern"] == NON_BLANK_TEXT and fields["name"]["maxLength"] == 200
        assert fields["systemPrompt"]["pattern"] == NON_BLANK_TEXT
        assert fields["enabledTools"]["items"]["pattern"] == TOOL_NAME and fields["enabledTools"]["uniqueItems"]
    assert "anyOf" not in patch["name"] and "anyOf" not in patch["primaryProvider"]  # null is refused there
    assert schemas["AgentSpec"]["additionalProperties"] is False


def test_dates_messages_and_voice_are_typed_as_the_server_reads_them(spec):
    rollup = {p["name"]: p["schema"] for p in spec["paths"]["/v1/usage/rollup"]["get"]["parameters"]}
    assert rollup["from"]["format"] == "date" and rollup["from"]["pattern"] == DAY
    messages = spec["paths"]["/v1/sessions/{sessionId}/messages"]["post"]
    content = messages["requestBody"]["content"]["application/json"]["schema"]["properties"]["content"]
    assert content["minLength"] == 1 and content["pattern"] == NON_BLANK_TEXT
    assert {"200", "201"} <= set(messages["responses"])
    key = {p["name"]: p["schema"] for p in messages["parameters"]}["Idempotency-Key"]
    assert key["pattern"] == IDEMPOTENCY_KEY and key["maxLength"] == 255
    voice = spec["paths"]["/v1/sessions/{sessionId}/voice"]["post"]
    assert voice["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].endswith("/VoiceForm")
    duration = spec["components"]["schemas"]["VoiceForm"]["properties"]["audioDurationMs"]
    assert duration == {**duration, "type": "integer", "minimum": 1, "maximum": 3_600_000}
    assert {"200", "201"} <= set(voice["responses"])

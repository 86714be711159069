"""Property-based fuzzing: hostile methods, paths, headers, queries and bodies never cause a 5xx.

Paths come from the app's own OpenAPI document (every template, with hostile
or real ids filled in) plus random ones; bodies are arbitrary JSON, broken
JSON or raw bytes. Every answer must carry X-Request-Id, every non-2xx must be
the error envelope, and no body may hold a traceback.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest
from api_support import Tenant, new_tenant
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PRINTABLE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip)
ANY_TEXT = st.text(max_size=60)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | ANY_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4),
    max_leaves=12)
FIELDS = ["name", "primaryProvider", "fallbackProvider", "systemPrompt", "enabledTools", "agentId", "customerId",
          "metadata", "role", "content"]
OBJECTS = st.dictionaries(st.sampled_from(FIELDS) | ANY_TEXT, JSON_VALUES, max_size=6)
BODIES = st.one_of(
    st.none(),
    OBJECTS.map(lambda o: ("application/json", json.dumps(o).encode())),
    JSON_VALUES.map(lambda v: ("application/json", json.dumps(v).encode())),
    st.binary(max_size=200).map(lambda b: ("application/json", b)),
    st.tuples(PRINTABLE, st.binary(max_size=200)),
    st.binary(max_size=200).map(lambda b: ("multipart/form-data; boundary=xyz", b"--xyz\r\n" + b)),
)


@pytest.fixture(scope="module")
def fuzz_target(server, gateway) -> tuple[Tenant, list[str]]:
    """A tenant with one real agent and session, and the app's path templates."""
    client = httpx.Client(base_url=server.url, timeout=20)
    tenant = new_tenant(gateway, client, "Fuzz")
    session = tenant.session()
    spec = client.get("/openapi.json").json()
    tenant.real_ids = {"agentId": session["agentId"], "sessionId": session["id"]}  # type: ignore[attr-defined]
    return tenant, sorted(spec["paths"])


def _fill(template: str, ids: dict[str, str], hostile: str, use_real: bool) -> str:
    for name in ("agentId", "sessionId"):
        value = ids[name] if use_real else quote(hostile, safe="") or "x"
        template = template.replace("{" + name + "}", value)
    return template


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_requests_never_cause_a_server_error(fuzz_target, data):
    tenant, templates = fuzz_target
    method = data.draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]))
    if data.draw(st.booleans()):
        path = _fill(data.draw(st.sampled_from(templates)), tenant.real_ids, data.draw(ANY_TEXT),  # type: ignore[attr-defined]
                     data.draw(st.booleans()))
    else:
        path = "/" + "/".join(quote(s, safe="") or "_" for s in data.draw(st.lists(ANY_TEXT, max_size=4)))
    headers = {}
    key = data.draw(st.sampled_from(["valid", "none", "random"]))
    if key == "valid":
        headers["X-API-Key"] = tenant.key
    elif key == "random":
        headers["X-API-Key"] = data.draw(PRINTABLE)
    if data.draw(st.booleans()):
        headers["Idempotency-Key"] = data.draw(PRINTABLE)
    params = data.draw(st.dictionaries(st.sampled_from(["from", "to", "limit", "x"]) | PRINTABLE, PRINTABLE, max_size=3))
    body = data.draw(BODIES)
    content = None
    if body is not None:
        headers["Content-Type"], content = body
    response = tenant.http.request(method, path, params=params, headers=headers, content=content)
    assert response.status_code < 500, (method, path, response.text)
    assert response.headers["x-request-id"].startswith("req_")
    assert "Traceback" not in response.text and 'File "' not in response.text
    if response.status_code >= 400 and method != "HEAD":
        error = response.json()["error"]
        envelope = {"code", "message", "details", "requestId"}
        assert set(error) in (envelope, envelope | {"type", "param"})  # the latter: OpenAI's shape (front door)
        assert error["requestId"] == response.headers["x-request-id"]

"""Every error code of the contract, always in the envelope, never FastAPI's own shape."""

from __future__ import annotations

import httpx
import pytest
from api_support import assert_error, make_wav

from vbgateway.voice import MAX_AUDIO_BYTES


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "sk_unknown"}, {"X-API-Key": ""}, {"X-API-Key": "x" * 400}])
def test_missing_or_unknown_keys_are_invalid_api_key(http, headers):
    assert_error(http.get("/v1/me", headers=headers), 401, "INVALID_API_KEY")


def test_a_revoked_key_is_invalid_api_key(gateway, http):
    tenant, _ = gateway.create_tenant("Revoked Ltd")
    key_id, key = gateway.create_api_key(tenant.id)
    assert http.get("/v1/me", headers={"X-API-Key": key}).status_code == 200
    gateway.revoke_api_key(key_id)
    assert_error(http.get("/v1/me", headers={"X-API-Key": key}), 401, "INVALID_API_KEY")


def test_authentication_comes_before_body_parsing(http):
    response = http.post("/v1/agents", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(response, 401, "INVALID_API_KEY")


def test_malformed_json_is_a_validation_error(acme):
    response = acme.post("/v1/agents", content=b'{"name": ', headers={"Content-Type": "application/json"})
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "JSON" in error["message"]


@pytest.mark.parametrize("body", [
    {},
    {"name": "", "primaryProvider": "vendorA", "systemPrompt": "x"},
    {"name": "x" * 201, "primaryProvider": "vendorA", "systemPrompt": "x"},
    {"name": "A", "primaryProvider": "vendorA", "systemPrompt": "   "},
    {"name": "A", "primaryProvider": "vendorZ", "systemPrompt": "x"},
    {"name": "A", "primaryProvider": "vendorA", "fallbackProvider": "vendorA", "systemPrompt": "x"},
    {"name": "A", "primaryProvider": "vendorA", "systemPrompt": "x", "enabledTools": "InvoiceLookup"},
    {"name": "A", "primaryProvider": "vendorA", "systemPrompt": "x", "surprise": 1},
    [1, 2, 3],
])
def test_invalid_agents_are_validation_errors_with_field_details(acme, body):
    error = assert_error(acme.post("/v1/agents", json=body), 400, "VALIDATION_ERROR")
    assert error["details"]["errors"] and all({"field", "message"} <= set(e) for e in error["details"]["errors"])
    assert acme.get("/v1/agents").json() == {"agents": []}  # bad input changes nothing


def test_a_form_body_where_json_is_expected_says_what_is_expected(acme):
    error = assert_error(acme.post("/v1/agents", data={"name": "x"}), 400, "VALIDATION_ERROR")
    assert "application/json" in error["message"]


@pytest.mark.parametrize("body", [{"content": ""}, {"content": 5}, {"role": "assistant", "content": "hi"}, {}])
def test_invalid_messages_are_validation_errors(acme, body):
    session = acme.session()
    assert_error(acme.post(f"/v1/sessions/{session['id']}/messages", json=body), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("query", [{"from": "yesterday"}, {"from": "2026-02-30", "to": "2026-03-01"},
                                   {"from": "2026-03-02", "to": "2026-03-01"}, {"limit": "1001"}, {"limit": "0"},
                                   {"limit": "ten"}])
def test_bad_usage_queries_are_validation_errors(acme, query):
    assert_error(acme.get("/v1/usage/events", params=query), 400, "VALIDATION_ERROR")


def test_limit_1000_is_allowed(acme):
    assert acme.get("/v1/usage/events", params={"limit": 1000}).status_code == 200


def test_unknown_agent_is_agent_not_found(acme):
    assert_error(acme.get("/v1/agents/agt_doesnotexist"), 404, "AGENT_NOT_FOUND")
    assert_error(acme.put("/v1/agents/agt_doesnotexist", json={"name": "x"}), 404, "AGENT_NOT_FOUND")
    assert_error(acme.post("/v1/sessions", json={"agentId": "agt_doesnotexist"}), 404, "AGENT_NOT_FOUND")


def test_unknown_session_is_session_not_found(acme):
    assert_error(acme.post("/v1/sessions/ses_nope/messages", json={"content": "hi"}), 404, "SESSION_NOT_FOUND")
    assert_error(acme.get("/v1/sessions/ses_nope/transcript"), 404, "SESSION_NOT_FOUND")
    assert_error(acme.post("/v1/sessions/ses_nope/voice", files={"audio": ("a.wav", make_wav(), "audio/wav")}),
                 404, "SESSION_NOT_FOUND")


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/nothing", "/v2/me", "/v1/agents/a/b", "/favicon.ico"])
def test_unknown_routes_are_not_found(http, path):
    assert_error(http.get(path), 404, "NOT_FOUND")


@pytest.mark.parametrize("method, path, allowed", [
    ("DELETE", "/v1/agents", ["GET", "POST"]), ("TRACE", "/v1/usage/rollup", ["GET"]),
    ("PATCH", "/v1/agents/agt_x", ["GET", "PUT"]), ("GET", "/v1/sessions/ses_x/messages", ["POST"]),
    ("HEAD", "/v1/me", ["GET"]), ("POST", "/health", ["GET"])])
def test_an_undeclared_method_is_405_in_the_envelope_with_an_allow_header(acme, method, path, allowed):
    response = acme.http.request(method, path, headers=acme.headers)
    assert response.status_code == 405 and response.headers["allow"] == ", ".join(allowed)
    if method != "HEAD":
        error = assert_error(response, 405, "METHOD_NOT_ALLOWED")
        assert error["details"] == {"method": method, "allowed": allowed}


def test_same_key_different_body_is_idempotency_conflict(acme):
    session = acme.session()
    url = f"/v1/sessions/{session['id']}/messages"
    assert acme.post(url, json={"content": "a"}, headers={"Idempotency-Key": "dup"}).status_code == 201
    assert_error(acme.post(url, json={"content": "b"}, headers={"Idempotency-Key": "dup"}), 409,
                 "IDEMPOTENCY_CONFLICT")


def test_invalid_idempotency_keys_are_validation_errors(acme):
    session = acme.session()
    response = acme.post(f"/v1/sessions/{session['id']}/messages", json={"content": "a"},
                         headers={"Idempotency-Key": "k" * 256})
    assert_error(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("audio", [b"", b"not audio at all", b"RIFF\x00\x00\x00\x00WAVEfmt ", make_wav()[:60]])
def test_bad_audio_is_invalid_audio(acme, audio):
    session = acme.session()
    response = acme.post(f"/v1/sessions/{session['id']}/voice", files={"audio": ("a.wav", audio, "audio/wav")})
    assert_error(response, 400, "INVALID_AUDIO")


@pytest.mark.parametrize("data, files", [({"audioDurationMs": "soon"}, True), ({"audioDurationMs": "-5"}, True),
                                         ({}, False)])
def test_bad_voice_forms_are_validation_errors(acme, data, files):
    session = acme.session()
    upload = {"audio": ("a.wav", make_wav(), "audio/wav")} if files else None
    response = acme.post(f"/v1/sessions/{session['id']}/voice", data=data, files=upload)
    assert_error(response, 400, "VALIDATION_ERROR")


def test_audio_over_10_mb_is_payload_too_large(acme):
    session = acme.session()
    audio = make_wav()[:44] + b"\x00" * (MAX_AUDIO_BYTES + 1 - 44)
    response = acme.post(f"/v1/sessions/{session['id']}/voice", files={"audio": ("a.wav", audio, "audio/wav")})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_a_declared_body_far_over_the_limit_is_refused_before_it_is_read(acme):
    session = acme.session()
    response = acme.post(f"/v1/sessions/{session['id']}/voice", content=b"x" * (12 * 1024 * 1024),
                         headers={"Content-Type": "multipart/form-data; boundary=zzz"})
    error = assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert error["details"]["sizeBytes"] == 12 * 1024 * 1024


def test_json_bodies_over_1_mb_are_payload_too_large(acme):
    response = acme.post("/v1/agents", json={"name": "A", "primaryProvider": "vendorA",
                                             "systemPrompt": "x" * (1024 * 1024)})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_a_chunked_body_over_the_limit_is_counted_as_it_arrives(acme):
    def chunks():
        for _ in range(40):
            yield b"x" * 32768  # 1.25 MB, no Content-Length

    response = acme.post("/v1/agents", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_all_providers_failed_is_502_with_every_attempt(failing_server):
    live, key = failing_server
    with httpx.Client(base_url=live.url, headers={"X-API-Key": key}, timeout=20) as client:
        agent = client.post("/v1/agents", json={"name": "A", "primaryProvider": "vendorA", "fallbackProvider": "vendorB",
                                                "systemPrompt": "x"}).json()["agent"]
        session = client.post("/v1/sessions", json={"agentId": agent["id"]}).json()["session"]
        error = assert_error(client.post(f"/v1/sessions/{session['id']}/messages", json={"content": "hi"},
                                         headers={"Idempotency-Key": "retry-me"}), 502, "ALL_PROVIDERS_FAILED")
        attempts = error["details"]["attempts"]
        assert [(a["provider"], a["retries"]) for a in attempts] == [("vendorA", 0), ("vendorA", 1), ("vendorB", 0),
                                                                     ("vendorB", 1)]
        assert all(a["status"] == "failed" and a["errorCode"] == "SERVER_ERROR" for a in attempts)
        usage = client.get("/v1/usage/events").json()
        assert usage["count"] == 0  # nothing billed


def test_an_unexpected_failure_is_internal_error_without_a_traceback(tmp_path, api_logs):
    """A gateway whose database is gone: whatever DuckDB raises, the client sees INTERNAL_ERROR."""
    from api_support import LiveServer, fast_providers

    from vbgateway import Gateway
    from vbgateway.api import create_app

    gw = Gateway.open(tmp_path / "gone.duckdb", providers=fast_providers())
    _, key = gw.create_tenant("Doomed")
    gw.close()
    with LiveServer(create_app(gw)) as live, httpx.Client(base_url=live.url, timeout=20) as client:
        error = assert_error(client.get("/v1/agents", headers={"X-API-Key": key}), 500, "INTERNAL_ERROR")
    assert error["details"] == {}
    assert "Traceback" in api_logs.text()  # the cause is in the server log, for the operator

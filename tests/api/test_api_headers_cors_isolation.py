"""X-Request-Id everywhere, CORS for the dashboard, and tenants that cannot see each other."""

from __future__ import annotations

import pytest
from api_support import ORIGIN, assert_error, make_wav


@pytest.mark.parametrize("method, path", [("GET", "/v1/me"), ("GET", "/nowhere"), ("GET", "/openapi.json"),
                                          ("GET", "/docs"), ("DELETE", "/v1/me"), ("OPTIONS", "/v1/agents")])
def test_every_response_carries_a_fresh_request_id(http, method, path):
    first, second = http.request(method, path), http.request(method, path)
    assert first.headers["x-request-id"].startswith("req_")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_success_responses_carry_the_request_id_too(acme):
    assert acme.get("/v1/me").headers["x-request-id"].startswith("req_")


def test_cors_preflight_from_the_dashboard_allows_the_key_and_idempotency_headers(http):
    response = http.options("/v1/sessions/ses_x/messages", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key, idempotency-key, content-type"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"x-api-key", "idempotency-key", "content-type"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["x-request-id"].startswith("req_")


def test_cors_answers_expose_the_request_id_also_on_errors(http):
    response = http.get("/v1/me", headers={"Origin": ORIGIN})
    assert_error(response, 401, "INVALID_API_KEY")
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


def test_other_sites_get_no_cors_grant(http):
    response = http.options("/v1/me", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in response.headers


def _error_without_ids(response):
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


def test_another_tenants_agent_answers_exactly_like_a_missing_one(acme, globex):
    theirs = globex.agent()["id"]
    missing = "agt_" + "0" * 20
    for call in (lambda a: acme.get(f"/v1/agents/{a}"), lambda a: acme.put(f"/v1/agents/{a}", json={"name": "x"}),
                 lambda a: acme.post("/v1/sessions", json={"agentId": a})):
        assert _error_without_ids(call(theirs)) == _error_without_ids(call(missing)) == (404, "AGENT_NOT_FOUND",
                                                                                          "agent not found")
    assert globex.get(f"/v1/agents/{theirs}").json()["agent"]["name"] == "Support"  # untouched


def test_another_tenants_session_answers_exactly_like_a_missing_one(acme, globex):
    theirs = globex.session()["id"]
    missing = "ses_" + "0" * 20
    for call in (lambda s: acme.post(f"/v1/sessions/{s}/messages", json={"content": "hi"}),
                 lambda s: acme.get(f"/v1/sessions/{s}/transcript"),
                 lambda s: acme.post(f"/v1/sessions/{s}/voice", files={"audio": ("a.wav", make_wav(), "audio/wav")})):
        assert _error_without_ids(call(theirs)) == _error_without_ids(call(missing))
        assert call(theirs).status_code == 404
    assert globex.get(f"/v1/sessions/{theirs}/transcript").json()["messages"] == []


def test_usage_is_scoped_to_the_key_s_tenant(acme, globex):
    session = globex.session()
    globex.post(f"/v1/sessions/{session['id']}/messages", json={"content": "hi"})
    assert acme.get("/v1/usage/events").json()["count"] == 0
    assert acme.get("/v1/usage/rollup").json()["totals"]["messages"] == 0
    assert globex.get("/v1/usage/events").json()["count"] == 1
    assert [a["id"] for a in acme.get("/v1/agents").json()["agents"]] == []

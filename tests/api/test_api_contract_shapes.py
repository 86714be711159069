"""Every endpoint's success answer has exactly the keys and nesting of api-contract.md."""

from __future__ import annotations

import base64
import re

from api_support import make_wav

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
AGENT_KEYS = {"id", "name", "primaryProvider", "fallbackProvider", "systemPrompt", "enabledTools", "maxOutputTokens",
              "createdAt", "updatedAt"}
SESSION_KEYS = {"id", "agentId", "customerId", "status", "metadata", "createdAt", "lastActivityAt"}
METADATA_KEYS = {"agentId", "providerUsed", "primaryAttempted", "fallbackAttempted", "fallbackUsed", "attempts", "usage",
                 "idempotency", "requestId"}
ATTEMPT_KEYS = {"provider", "status", "httpStatus", "latencyMs", "retries", "errorCode"}


def test_me_answers_the_tenant_and_the_price_of_each_provider(acme):
    response = acme.get("/v1/me")
    assert response.status_code == 200
    body = response.json()
    # additions beyond the contract: key and rateLimits (test_scopes_api.py), budget (test_budget_api.py)
    assert set(body) == {"tenant", "pricing", "key", "rateLimits", "budget"}
    assert body["budget"] is None  # no budget set
    assert set(body["tenant"]) == {"id", "name", "createdAt"} and body["tenant"]["id"] == acme.id
    assert ISO.match(body["tenant"]["createdAt"])
    assert body["pricing"] == {"vendorA": {"usdPer1kTokens": 0.002}, "vendorB": {"usdPer1kTokens": 0.003}}


def test_create_agent_answers_201_with_the_agent(acme):
    response = acme.post("/v1/agents", json={"name": "My Agent", "primaryProvider": "vendorA",
                                             "fallbackProvider": "vendorB", "systemPrompt": "You are brief.",
                                             "enabledTools": ["InvoiceLookup"]})
    assert response.status_code == 201
    agent = response.json()["agent"]
    assert set(response.json()) == {"agent"} and set(agent) == AGENT_KEYS
    assert agent["id"].startswith("agt_") and agent["fallbackProvider"] == "vendorB"
    assert agent["enabledTools"] == ["InvoiceLookup"] and ISO.match(agent["createdAt"])


def test_fallback_provider_none_and_null_both_mean_no_fallback(acme):
    assert acme.agent(fallbackProvider="none")["fallbackProvider"] is None
    assert acme.agent(fallbackProvider=None)["fallbackProvider"] is None


def test_list_and_get_agents(acme):
    created = acme.agent()
    listed = acme.get("/v1/agents").json()
    assert set(listed) == {"agents"} and [a["id"] for a in listed["agents"]] == [created["id"]]
    got = acme.get(f"/v1/agents/{created['id']}")
    assert got.status_code == 200 and got.json() == {"agent": created}


def test_put_agent_is_a_partial_update(acme):
    created = acme.agent()
    response = acme.put(f"/v1/agents/{created['id']}", json={"systemPrompt": "You are terse.", "fallbackProvider": "none"})
    assert response.status_code == 200
    agent = response.json()["agent"]
    assert set(agent) == AGENT_KEYS
    assert agent["systemPrompt"] == "You are terse." and agent["fallbackProvider"] is None
    assert agent["name"] == created["name"] and agent["primaryProvider"] == "vendorA"


def test_create_session_answers_201_with_the_session(acme):
    agent = acme.agent()
    response = acme.post("/v1/sessions", json={"agentId": agent["id"], "customerId": "customer_123",
                                               "metadata": {"source": "web"}})
    assert response.status_code == 201
    session = response.json()["session"]
    assert set(response.json()) == {"session"} and set(session) == SESSION_KEYS
    assert session["agentId"] == agent["id"] and session["status"] == "active"
    assert session["metadata"] == {"source": "web"} and session["customerId"] == "customer_123"


def test_send_message_answers_the_reply_and_how_it_was_obtained(acme):
    session = acme.session()
    response = acme.post(f"/v1/sessions/{session['id']}/messages", json={"role": "user", "content": "Hello"},
                         headers={"Idempotency-Key": "first"})
    assert response.status_code == 201, response.text  # a new reply was created
    body = response.json()
    assert set(body) == {"message", "metadata"}
    assert set(body["message"]) == {"id", "sessionId", "role", "content", "createdAt"}
    assert body["message"]["role"] == "assistant" and body["message"]["sessionId"] == session["id"]
    meta = body["metadata"]
    assert set(meta) == METADATA_KEYS
    assert all(set(a) == ATTEMPT_KEYS for a in meta["attempts"]) and meta["attempts"][0]["retries"] == 0
    assert set(meta["usage"]) == {"tokensIn", "tokensOut", "costUsd", "pricing"}
    assert meta["usage"]["pricing"] == {"usdPer1kTokens": 0.002}
    assert isinstance(meta["usage"]["costUsd"], float)
    assert meta["idempotency"] == {"key": "first", "replayed": False}
    assert meta["providerUsed"] == "vendorA" and meta["fallbackUsed"] is False


def test_a_message_without_role_is_a_user_message(acme):
    session = acme.session()
    assert acme.post(f"/v1/sessions/{session['id']}/messages", json={"content": "Hi"}).status_code == 201


def test_repeating_an_idempotency_key_replays_the_first_reply_with_200(acme):
    session = acme.session()
    responses = [acme.post(f"/v1/sessions/{session['id']}/messages", json={"content": "Hi"},
                           headers={"Idempotency-Key": "k-1"}) for _ in range(2)]
    assert [r.status_code for r in responses] == [201, 200]  # created, then the stored reply
    first, again = (r.json() for r in responses)
    assert again["metadata"]["idempotency"] == {"key": "k-1", "replayed": True}
    assert again["message"] == first["message"]
    assert again["metadata"]["usage"] == first["metadata"]["usage"]


def test_transcript_lists_messages_oldest_first_and_provider_calls(acme):
    session = acme.session()
    acme.post(f"/v1/sessions/{session['id']}/messages", json={"content": "Hello"})
    response = acme.get(f"/v1/sessions/{session['id']}/transcript")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"session", "messages", "events"}
    assert set(body["session"]) == SESSION_KEYS
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
    assert body["messages"][0]["content"] == "Hello"
    assert all(set(m) == {"id", "role", "content", "createdAt"} for m in body["messages"])
    assert body["events"] and all(set(e) == {"id", "type", "provider", "status", "latencyMs", "createdAt"}
                                  for e in body["events"])
    assert body["events"][0]["type"] == "provider_call"


def test_voice_upload_answers_transcript_reply_and_audio(acme):
    session = acme.session()
    response = acme.post(f"/v1/sessions/{session['id']}/voice", files={"audio": ("hello.wav", make_wav(1000), "audio/wav")},
                         data={"audioDurationMs": "5000"}, headers={"Idempotency-Key": "voice-1"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"sessionId", "transcriptText", "assistant", "audio", "metadata"}
    assert body["sessionId"] == session["id"] and body["transcriptText"]
    assert set(body["assistant"]) == {"id", "content", "createdAt"}
    assert set(body["audio"]) == {"mimeType", "base64", "durationMs"} and body["audio"]["mimeType"] == "audio/wav"
    assert base64.b64decode(body["audio"]["base64"])[:4] == b"RIFF" and body["audio"]["durationMs"] > 0
    assert set(body["metadata"]) == METADATA_KEYS | {"channel", "audioDurationMs"}
    assert body["metadata"]["channel"] == "voice"
    assert body["metadata"]["audioDurationMs"] == 1000  # measured from the WAV itself
    assert body["metadata"]["idempotency"] == {"key": "voice-1", "replayed": False}


def test_voice_replay_with_the_same_key_is_marked_replayed_and_answers_200(acme):
    session = acme.session()
    files = {"audio": ("a.wav", make_wav(500), "audio/wav")}
    responses = [acme.post(f"/v1/sessions/{session['id']}/voice", files=files, headers={"Idempotency-Key": "v"})
                 for _ in range(2)]
    assert [r.status_code for r in responses] == [201, 200]
    first, again = (r.json() for r in responses)
    assert again["metadata"]["idempotency"]["replayed"] is True
    assert again["assistant"] == first["assistant"] and again["audio"] == first["audio"]


def _usage_tenant(acme):
    session = acme.session()
    for text in ("one", "two", "three"):
        assert acme.post(f"/v1/sessions/{session['id']}/messages", json={"content": text}).status_code == 201
    return session


def test_usage_rollup_has_the_contracts_shape_and_counts(acme):
    session = _usage_tenant(acme)
    response = acme.get("/v1/usage/rollup", params={"from": "2020-01-01", "to": "2029-12-31"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"range", "totals", "byProvider", "topAgentsByCost"}
    assert body["range"] == {"from": "2020-01-01", "to": "2029-12-31"}
    totals = body["totals"]
    assert set(totals) == {"sessions", "messages", "tokensIn", "tokensOut", "tokensTotal", "costUsd"}
    assert totals["sessions"] == 1 and totals["messages"] == 6
    assert totals["tokensTotal"] == totals["tokensIn"] + totals["tokensOut"] and totals["costUsd"] > 0
    assert [set(p) for p in body["byProvider"]] == [{"provider", "sessions", "tokensIn", "tokensOut", "tokensTotal",
                                                     "costUsd"}]
    top = body["topAgentsByCost"]
    assert [set(a) for a in top] == [{"agentId", "agentName", "sessions", "tokensTotal", "costUsd"}]
    assert top[0]["agentId"] == session["agentId"] and top[0]["costUsd"] == totals["costUsd"]


def test_usage_rollup_defaults_to_the_last_30_days(acme):
    body = acme.get("/v1/usage/rollup").json()
    assert set(body["range"]) == {"from", "to"}


def test_usage_events_newest_first_with_count_and_limit(acme):
    _usage_tenant(acme)
    response = acme.get("/v1/usage/events", params={"from": "2020-01-01", "to": "2029-12-31", "limit": 2})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"events", "count", "limit"} and body["count"] == 2 and body["limit"] == 2
    assert all(set(e) == {"id", "sessionId", "agentId", "provider", "channel", "tokensIn", "tokensOut", "costUsd",
                          "createdAt", "requestId"} for e in body["events"])  # channel: added for the Python client
    assert {e["channel"] for e in body["events"]} == {"chat"}
    assert body["events"][0]["createdAt"] >= body["events"][1]["createdAt"]
    assert acme.get("/v1/usage/events").json()["limit"] == 200


def test_usage_monthly_has_twelve_months_oldest_first_with_a_column_per_provider(acme):
    _usage_tenant(acme)
    body = acme.get("/v1/usage/monthly").json()
    assert set(body) == {"monthly"} and len(body["monthly"]) == 12
    months = [row["month"] for row in body["monthly"]]
    assert months == sorted(months)
    assert all(set(row) == {"month", "vendorA", "vendorB"} for row in body["monthly"])
    assert body["monthly"][-1]["vendorA"] > 0 and body["monthly"][0]["vendorB"] == 0.0


def test_openapi_and_docs_are_served_and_describe_the_real_shapes(http):
    spec = http.get("/openapi.json").json()
    assert set(spec["paths"]) == {"/health", "/metrics", "/v1/me", "/v1/agents", "/v1/agents/{agentId}",
                                  "/v1/sessions", "/v1/sessions/{sessionId}", "/v1/sessions/{sessionId}/messages",
                                  "/v1/sessions/{sessionId}/transcript",
                                  "/v1/sessions/{sessionId}/voice", "/v1/usage/rollup", "/v1/usage/events",
                                  "/v1/usage/monthly", "/v1/chat/completions", "/v1/models", "/v1/models/{model}"}
    reply = spec["components"]["schemas"]["Reply"]
    assert set(reply["properties"]) == {"message", "metadata"}
    assert set(spec["components"]["schemas"]["ReplyMetadata"]["properties"]) == METADATA_KEYS
    assert set(spec["components"]["schemas"]["Agent"]["properties"]) == AGENT_KEYS
    assert all("422" not in op["responses"] for path in spec["paths"].values() for op in path.values())
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "cdn." not in docs.text  # served from the installed bundle: works offline


def test_a_reply_names_the_http_request_that_produced_it(acme):
    session = acme.session()
    response = acme.post(f"/v1/sessions/{session['id']}/messages", json={"content": "Which request?"})
    assert response.status_code == 201
    assert response.json()["metadata"]["requestId"] == response.headers["X-Request-Id"]

"""Concurrent duplicates bill once; the access log says who did what, never a key or a word of content."""

from __future__ import annotations

import asyncio
import json

import httpx


def test_fifty_concurrent_posts_of_one_key_bill_once_and_replay_49_times(server, gateway, acme):
    session = acme.session()

    async def storm() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
            return await asyncio.gather(*(
                client.post(f"/v1/sessions/{session['id']}/messages", json={"content": "Where is my order?"},
                            headers={**acme.headers, "Idempotency-Key": "storm-1"}) for _ in range(50)))

    responses = asyncio.run(storm())
    replayed = [r.json()["metadata"]["idempotency"]["replayed"] for r in responses]
    assert replayed.count(False) == 1 and replayed.count(True) == 49
    assert [r.status_code for r in responses] == [200 if again else 201 for again in replayed]
    assert len({r.json()["message"]["id"] for r in responses}) == 1
    billed = gateway.sql("SELECT count(*) AS n FROM usage_events WHERE session_id = ?", [session["id"]])
    assert int(billed["n"][0]) == 1
    transcript = acme.get(f"/v1/sessions/{session['id']}/transcript").json()
    assert len(transcript["messages"]) == 2


def test_a_failed_request_leaves_its_key_free(failing_server):
    live, key = failing_server
    with httpx.Client(base_url=live.url, headers={"X-API-Key": key}, timeout=20) as client:
        agent = client.post("/v1/agents", json={"name": "A", "primaryProvider": "vendorA",
                                                "systemPrompt": "x"}).json()["agent"]
        session = client.post("/v1/sessions", json={"agentId": agent["id"]}).json()["session"]
        url = f"/v1/sessions/{session['id']}/messages"
        for _ in range(2):  # the same key again is not a replay of a failure nor a conflict
            assert client.post(url, json={"content": "hi"}, headers={"Idempotency-Key": "free"}).status_code == 502


def _access_lines(api_logs) -> list[dict]:
    lines = []
    for line in api_logs.lines:
        name, _, rest = line.partition(" INFO ")
        if name == "vbgateway.api.access":
            lines.append(json.loads(rest))
    return lines


def test_one_structured_log_line_per_request_with_id_tenant_route_status_latency(acme, api_logs):
    session = acme.session()
    response = acme.post(f"/v1/sessions/{session['id']}/messages", json={"content": "hi"})
    request_id = response.headers["x-request-id"]
    [line] = [entry for entry in _access_lines(api_logs) if entry["requestId"] == request_id]
    assert line["tenantId"] == acme.id
    assert line["route"] == "/v1/sessions/{sessionId}/messages"
    assert line["status"] == 201 and line["method"] == "POST"
    assert isinstance(line["latencyMs"], float) and line["latencyMs"] >= 0


def test_refusals_are_logged_too_without_a_tenant(http, api_logs):
    response = http.get("/v1/me", headers={"X-API-Key": "sk_wrong"})
    [line] = [e for e in _access_lines(api_logs) if e["requestId"] == response.headers["x-request-id"]]
    assert line["status"] == 401 and line["tenantId"] is None and line["route"] == "/v1/me"


def test_logs_never_hold_the_api_key_or_message_content(acme, api_logs):
    secret_words = "my card number is 4111-1111-1111-1111"
    session = acme.session()
    acme.post(f"/v1/sessions/{session['id']}/messages", json={"content": secret_words})
    acme.post(f"/v1/sessions/{session['id']}/messages", json={"content": secret_words},
              headers={"Idempotency-Key": "k"})
    acme.post(f"/v1/sessions/{session['id']}/messages", json={"content": secret_words + "!"},
              headers={"Idempotency-Key": "k"})  # a conflict
    acme.http.get("/v1/me", headers={"X-API-Key": acme.key + "x"})  # a refused key
    text = api_logs.text()
    assert acme.key not in text and acme.key[:12] not in text
    # the whole number: random hex request ids may contain "4111" by chance
    assert "4111-1111-1111-1111" not in text and "card number" not in text

"""What clients written for the original VocalBridge service rely on, beyond api-contract.md's shapes.

All-time usage ranges, up to 10 top agents, 201/200 for new and replayed
replies, an unauthenticated health check, X-Correlation-Id echoed and
logged, agents newest first.
"""

from __future__ import annotations

import json

import httpx
import pytest
from api_support import LiveServer, assert_error, fast_providers

from vbgateway import Gateway
from vbgateway.api import create_app

ALL_TIME = [("2020-01-01", "2099-12-31"), ("0001-01-01", "9999-12-31")]


def _reply(tenant, session_id: str, content: str = "hello") -> httpx.Response:
    response = tenant.post(f"/v1/sessions/{session_id}/messages", json={"content": content})
    assert response.status_code == 201, response.text
    return response


@pytest.mark.parametrize(("start", "end"), ALL_TIME)
def test_usage_answers_an_all_time_range(acme, start, end):
    session = acme.session()
    _reply(acme, session["id"])
    rollup = acme.get("/v1/usage/rollup", params={"from": start, "to": end})
    assert rollup.status_code == 200, rollup.text
    body = rollup.json()
    assert body["range"] == {"from": start, "to": end}
    assert body["totals"]["messages"] == 2 and body["totals"]["sessions"] == 1
    events = acme.get("/v1/usage/events", params={"from": start, "to": end})
    assert events.status_code == 200 and events.json()["count"] == 1


def test_usage_with_only_a_very_early_end_starts_at_the_first_day(acme):
    body = acme.get("/v1/usage/rollup", params={"to": "0001-01-05"}).json()
    assert body["range"] == {"from": "0001-01-01", "to": "0001-01-05"}
    assert acme.get("/v1/usage/events", params={"to": "0001-01-05"}).json()["count"] == 0


def test_a_range_that_ends_before_it_starts_is_still_refused(acme):
    error = assert_error(acme.get("/v1/usage/rollup", params={"from": "2099-12-31", "to": "2020-01-01"}), 400,
                         "VALIDATION_ERROR")
    assert "after" in error["message"]


def test_top_agents_by_cost_lists_up_to_ten_costliest_first(acme):
    agents = [acme.agent(name=f"Agent {i:02d}") for i in range(12)]
    for i, agent in enumerate(agents):
        session = acme.session(agent["id"])
        _reply(acme, session["id"], "word " * (5 + 80 * i))  # 100 tokens more each: outweighs the reply
    body = acme.get("/v1/usage/rollup", params={"from": "2020-01-01", "to": "2099-12-31"}).json()
    top = body["topAgentsByCost"]
    assert len(top) == 10
    assert [a["agentName"] for a in top] == [f"Agent {i:02d}" for i in range(11, 1, -1)]
    assert [a["costUsd"] for a in top] == sorted((a["costUsd"] for a in top), reverse=True)


def test_agents_are_listed_newest_first(acme):
    created = [acme.agent(name=name)["id"] for name in ("First", "Second", "Third")]
    assert [a["id"] for a in acme.get("/v1/agents").json()["agents"]] == created[::-1]


def test_a_new_reply_is_201_and_its_replay_200_for_text_and_voice_alike(acme):
    from api_support import make_wav

    session = acme.session()
    url = f"/v1/sessions/{session['id']}"
    texts = [acme.post(f"{url}/messages", json={"content": "once"}, headers={"Idempotency-Key": "t"}) for _ in "ab"]
    voices = [acme.post(f"{url}/voice", files={"audio": ("a.wav", make_wav(300), "audio/wav")},
                        headers={"Idempotency-Key": "v"}) for _ in "ab"]
    for first, again in (texts, voices):
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["metadata"]["idempotency"]["replayed"] is False
        assert again.json()["metadata"]["idempotency"]["replayed"] is True


def test_health_needs_no_key_and_reports_the_database(http):
    response = http.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok"
    assert isinstance(body["database"]["schemaVersion"], int) and body["database"]["schemaVersion"] >= 1
    assert isinstance(body["database"]["pendingRecords"], int) and body["database"]["pendingRecords"] >= 0
    assert response.headers["x-request-id"].startswith("req_")


def test_health_is_503_in_the_envelope_when_the_database_is_gone(tmp_path):
    gateway = Gateway.open(tmp_path / "gone.duckdb", providers=fast_providers())
    app = create_app(gateway)
    gateway.close()
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=20) as client:
        error = assert_error(client.get("/health"), 503, "SERVICE_UNAVAILABLE")
    assert error["details"] == {"database": "unavailable"}


def _access_line(api_logs, request_id: str) -> dict:
    for line in api_logs.lines:
        name, _, rest = line.partition(" INFO ")
        if name == "vbgateway.api.access" and json.loads(rest)["requestId"] == request_id:
            return json.loads(rest)
    raise AssertionError(f"no access log line for {request_id}")


@pytest.mark.parametrize("path", ["/v1/me", "/health", "/v1/nowhere"])
def test_a_correlation_id_is_echoed_and_logged(acme, api_logs, path):
    response = acme.get(path, headers={"X-Correlation-Id": "dash-42 retry/1"})
    assert response.headers["x-correlation-id"] == "dash-42 retry/1"
    assert _access_line(api_logs, response.headers["x-request-id"])["correlationId"] == "dash-42 retry/1"


def test_a_correlation_id_rides_along_on_the_fast_path_and_on_errors(acme, api_logs):
    session = acme.session()
    for content, status in (("hi", 201), ("", 400)):
        response = acme.post(f"/v1/sessions/{session['id']}/messages", json={"content": content},
                             headers={"X-Correlation-Id": f"c-{status}"})
        assert response.status_code == status and response.headers["x-correlation-id"] == f"c-{status}"
        line = _access_line(api_logs, response.headers["x-request-id"])
        assert line["correlationId"] == f"c-{status}" and line["route"] == "/v1/sessions/{sessionId}/messages"


def test_without_a_correlation_id_nothing_is_echoed(acme, api_logs):
    response = acme.get("/v1/me")
    assert "x-correlation-id" not in response.headers
    assert _access_line(api_logs, response.headers["x-request-id"])["correlationId"] is None


@pytest.mark.parametrize("value", ["x" * 201, "tab\there", "caf\u00e9"])
def test_an_unusable_correlation_id_is_refused_and_not_repeated(acme, api_logs, value):
    response = acme.get("/v1/me", headers={"X-Correlation-Id": value.encode("latin-1")})
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "X-Correlation-Id"}
    assert "x-correlation-id" not in response.headers
    assert _access_line(api_logs, response.headers["x-request-id"])["correlationId"] is None

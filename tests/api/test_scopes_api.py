"""Scopes, expiry and rate limits over real HTTP: 403 per operation, 401 for an expired key, 429 with Retry-After.

The scope matrix runs on the session's server; the rate-limit tests run their own server over a gateway
on a ``VirtualClock`` whose vendors answer at once, so the clock moves only when a test moves it and
every ``Retry-After`` is exact.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from api_support import ORIGIN, LiveServer, assert_error, fast_providers, make_wav

import vbgateway
from vbgateway import Gateway, VirtualClock
from vbgateway.api import create_app
from vbgateway.client import HttpRetryPolicy
from vbgateway.errors import RateLimitExceededError
from vbgateway.governance import ROUTE_SCOPES, SCOPES
from vbgateway.governance.scopes import OPEN_ROUTES

FRONT_DOOR = ("/v1/chat/completions", "/v1/models")  # the OpenAI-compatible routes answer in OpenAI's shape
AGENT = {"name": "Support", "primaryProvider": "vendorA", "fallbackProvider": "vendorB",
         "systemPrompt": "You are helpful.", "enabledTools": []}


def assert_refused(response: httpx.Response, template: str, code: str) -> dict:
    """The error of a refusal: the /v1 envelope, or OpenAI's shape (lower-case code) on the front door."""
    if template.startswith(FRONT_DOOR):
        body = response.json()
        assert response.status_code == 403 and body["error"]["code"] == code.lower(), response.text
        assert body["error"]["type"] == "permission_error"
        return body["error"]  # type: ignore[no-any-return]
    return assert_error(response, 403, code)


def call(http: httpx.Client, key: str, method: str, template: str, ids: SimpleNamespace,
         body: str = "valid") -> httpx.Response:
    """One request to ``template`` with a body the route takes (``body="broken"``: malformed JSON)."""
    path = template.replace("{agentId}", ids.agent).replace("{sessionId}", ids.session).replace("{model}", ids.agent)
    headers = {"X-API-Key": key}
    if path.endswith("/voice"):
        files = {"audio": ("a.wav", make_wav(400), "audio/wav")}
        return http.request(method, path, headers=headers, files=files)
    if method == "GET":
        return http.request(method, path, headers=headers)
    payload = {"/v1/agents": AGENT, "/v1/sessions": {"agentId": ids.agent},
               "/v1/chat/completions": {"model": ids.agent, "messages": [{"role": "user", "content": "Hello"}]},
               }.get(path, {"content": "Hello"})
    if method == "PUT":
        payload = {"name": "Renamed"}
    content = b"{not json" if body == "broken" else httpx.Request("POST", "/", json=payload).content
    return http.request(method, path, headers={**headers, "Content-Type": "application/json"}, content=content)


@pytest.fixture
def tenant(gateway: Gateway, http: httpx.Client) -> SimpleNamespace:
    """A tenant with an agent and a session made by the operator, and a key per single scope."""
    created, _ = gateway.create_tenant(f"Scoped {datetime.now(UTC).timestamp()}")
    operator = gateway.as_tenant(created.id)
    agent = operator.create_agent(name="Support", primary_provider="vendorA", fallback_provider="vendorB",
                                  system_prompt="You are helpful.")
    session = operator.create_session(agent.id)
    keys = {scope: gateway.create_api_key(created.id, scopes={scope})[1] for scope in SCOPES}
    return SimpleNamespace(id=created.id, agent=agent.id, session=session.id, keys=keys)


# --------------------------------------------------------------------------- scopes
@pytest.mark.parametrize(("method", "template"), sorted(ROUTE_SCOPES))
def test_each_operation_answers_403_to_a_key_without_its_scope_and_serves_one_with_it(http, tenant, method,
                                                                                          template):
    needed = ROUTE_SCOPES[(method, template)]
    for scope, key in tenant.keys.items():
        response = call(http, key, method, template, tenant)
        if scope == needed:
            assert response.status_code in (200, 201), (scope, response.text)
        else:
            error = assert_refused(response, template, "INSUFFICIENT_SCOPE")
            assert error["details"] == {"required": needed, "granted": [scope]}


@pytest.mark.parametrize(("method", "template"), sorted(k for k in ROUTE_SCOPES if k[0] in ("POST", "PUT")
                                                        and not k[1].endswith("/voice")))
def test_the_scope_is_checked_before_the_body_is_read(http, tenant, method, template):
    wrong = next(key for scope, key in tenant.keys.items() if scope != ROUTE_SCOPES[(method, template)])
    assert_refused(call(http, wrong, method, template, tenant, body="broken"), template, "INSUFFICIENT_SCOPE")


def test_me_needs_no_scope_and_names_the_key_s_scopes_and_limits(gateway, http, tenant):
    gateway.set_rate_limit(tenant.id, requests_per_minute=600, tokens_per_minute=200_000)
    key_id, key = gateway.create_api_key(tenant.id, scopes={"chat", "usage:read"},
                                         expires_at=datetime(2099, 1, 1, tzinfo=UTC),
                                         rate_limit={"requests_per_minute": 60})
    response = http.get("/v1/me", headers={"X-API-Key": key})
    assert response.status_code == 200
    body = response.json()
    assert body["tenant"]["id"] == tenant.id
    assert body["key"] == {"id": key_id, "scopes": ["chat", "usage:read"], "expiresAt": "2099-01-01T00:00:00.000Z"}
    assert body["rateLimits"] == {"tenant": {"requestsPerMinute": 600, "tokensPerMinute": 200_000},
                                  "key": {"requestsPerMinute": 60, "tokensPerMinute": None}}
    other = http.get("/v1/me", headers={"X-API-Key": tenant.keys["agents:read"]}).json()
    assert other["key"]["scopes"] == ["agents:read"] and other["key"]["expiresAt"] is None
    assert other["rateLimits"]["key"] is None


def test_the_http_client_raises_insufficient_scope_and_knows_its_scopes(server, tenant):
    with vbgateway.connect(server.url, tenant.keys["usage:read"]) as client:
        assert client.scopes == {"usage:read"} and client.key_id is not None
        client.usage_monthly(2)
        with pytest.raises(vbgateway.GatewayError) as info:
            client.list_agents()
        assert (info.value.code, info.value.http_status, info.value.details["required"]) == (
            "INSUFFICIENT_SCOPE", 403, "agents:read")


def test_every_v1_route_names_its_scope_in_the_openapi_document(http):
    document = http.get("/openapi.json").json()
    seen = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not path.startswith("/v1/") or path.startswith("/v1/operator/"):
                continue
            key = (method.upper(), path)
            seen.add(key)
            if key in OPEN_ROUTES:
                assert "x-required-scope" not in operation and "403" not in operation["responses"]
                continue
            assert operation["x-required-scope"] == ROUTE_SCOPES[key]
            assert ROUTE_SCOPES[key] in operation["description"]
            shape = "OpenAIErrorResponse" if path.startswith(FRONT_DOOR) else "ErrorResponse"
            assert operation["responses"]["403"]["content"]["application/json"]["schema"] == {
                "$ref": f"#/components/schemas/{shape}"}
            limited = path.endswith(("/messages", "/voice", "/chat/completions"))
            assert ("429" in operation["responses"]) == limited
            if limited:
                assert operation["responses"]["429"]["headers"]["Retry-After"]["required"] is True
    assert seen == set(ROUTE_SCOPES) | set(OPEN_ROUTES)


# --------------------------------------------------------------------------- expiry and rate limits
@pytest.fixture
def limited(tmp_path):
    """A server over a gateway on a virtual clock; its tenant may send 2 messages a minute."""
    clock = VirtualClock(start=datetime(2026, 1, 1, tzinfo=UTC), commit_window_s=0.0)
    gw = Gateway.open(tmp_path / "limited.duckdb", clock=clock, providers=fast_providers())
    tenant, key = gw.create_tenant("Limited Inc")
    gw.set_rate_limit(tenant.id, requests_per_minute=2)
    operator = gw.as_tenant(tenant.id)
    agent = operator.create_agent(name="Support", primary_provider="vendorA", fallback_provider="vendorB",
                                  system_prompt="You are helpful.")
    session = operator.create_session(agent.id)
    try:
        with LiveServer(create_app(gw)) as live, httpx.Client(base_url=live.url, timeout=20) as http:
            yield SimpleNamespace(gw=gw, clock=clock, tenant=tenant.id, key=key, session=session.id, http=http,
                                  url=live.url)
    finally:
        gw.close()


def send(limited: SimpleNamespace, key: str | None = None, **headers: str) -> httpx.Response:
    return limited.http.post(f"/v1/sessions/{limited.session}/messages", json={"content": "Hello"},
                             headers={"X-API-Key": key or limited.key, **headers})


def test_a_send_past_the_limit_is_429_with_retry_after_and_is_admitted_after_it(limited):
    assert [send(limited).status_code for _ in range(2)] == [201, 201]
    refused = send(limited)
    error = assert_error(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert refused.headers["retry-after"] == "30"
    assert error["details"] == {"retryAfterMs": 30_000, "limit": "requestsPerMinute", "scope": "tenant", "value": 2}
    limited.clock.advance(29.999)
    assert send(limited).headers["retry-after"] == "1"  # rounded up
    limited.clock.advance(0.001)
    assert send(limited).status_code == 201
    voice = limited.http.post(f"/v1/sessions/{limited.session}/voice", headers={"X-API-Key": limited.key},
                              files={"audio": ("a.wav", make_wav(400), "audio/wav")})
    assert_error(voice, 429, "RATE_LIMIT_EXCEEDED")
    assert voice.headers["retry-after"] == "30"


def test_a_browser_may_read_retry_after(limited):
    send(limited)
    send(limited)
    refused = send(limited, Origin=ORIGIN)
    assert refused.status_code == 429
    assert "retry-after" in refused.headers["access-control-expose-headers"].lower()


def test_a_key_s_own_limit_is_429_with_its_scope(limited):
    _, key = limited.gw.create_api_key(limited.tenant, rate_limit={"requests_per_minute": 1})
    assert send(limited, key).status_code == 201
    error = assert_error(send(limited, key), 429, "RATE_LIMIT_EXCEEDED")
    assert (error["details"]["scope"], error["details"]["retryAfterMs"]) == ("key", 60_000)


def test_the_http_client_raises_rate_limit_exceeded_with_retry_after(limited):
    client = vbgateway.connect(limited.url, limited.key, retry=HttpRetryPolicy(attempts=1))
    try:
        for _ in range(2):
            asyncio.run(client.send_message(limited.session, "Hello"))
        with pytest.raises(RateLimitExceededError) as info:
            asyncio.run(client.send_message(limited.session, "Hello"))
        assert info.value.retry_after == 30.0 and info.value.http_status == 429
    finally:
        client.close()


def test_the_http_client_waits_retry_after_on_its_clock_and_then_is_served(limited):
    client = vbgateway.connect(limited.url, limited.key, clock=limited.clock)  # the server's clock: waits move it
    try:
        for _ in range(2):
            asyncio.run(client.send_message(limited.session, "Hello"))
        started = limited.clock.now()
        reply = asyncio.run(client.send_message(limited.session, "Hello"))
        assert reply.message.role == "assistant"
        assert limited.clock.now() - started == timedelta(seconds=30)
    finally:
        client.close()


def test_an_expired_key_is_401_like_a_revoked_one(limited):
    _, key = limited.gw.create_api_key(limited.tenant, expires_at=limited.clock.now() + timedelta(seconds=10))
    assert limited.http.get("/v1/agents", headers={"X-API-Key": key}).status_code == 200
    limited.clock.advance(10)
    expired = assert_error(limited.http.get("/v1/agents", headers={"X-API-Key": key}), 401, "INVALID_API_KEY")
    unknown = assert_error(limited.http.get("/v1/agents", headers={"X-API-Key": "sk_" + "x" * 43}), 401,
                           "INVALID_API_KEY")
    assert (expired["message"], expired["details"]) == (unknown["message"], unknown["details"])
    assert_error(send(limited, key), 401, "INVALID_API_KEY")  # the messages fast path too


def test_a_rotated_key_works_over_http_until_its_grace_ends(limited):
    key_id, old = limited.gw.create_api_key(limited.tenant)
    _, new = limited.gw.rotate_api_key(key_id, grace_s=60)
    for key in (old, new):
        assert limited.http.get("/v1/me", headers={"X-API-Key": key}).status_code == 200
    limited.clock.advance(60)
    assert_error(limited.http.get("/v1/me", headers={"X-API-Key": old}), 401, "INVALID_API_KEY")
    assert limited.http.get("/v1/me", headers={"X-API-Key": new}).status_code == 200

"""Specification of GET /metrics: Prometheus text, figures that agree with the database, who may read them.

Scraped from a real uvicorn server on loopback. The rule for peers on other
machines is checked through httpx's ASGI transport, which lets a request come
from any address (a loopback server cannot be reached from anything else).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from api_support import LiveServer
from prometheus_client.parser import text_string_to_metric_families

from vbgateway import Gateway, RetryPolicy
from vbgateway.api import create_app
from vbgateway.providers import VendorA, VendorB

SECRET = "metrics-operator-secret"


def scrape(client: httpx.Client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def value(samples: list, name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[Gateway, httpx.Client, str]]:
    """A gateway whose vendorA fails every first try (then answers), served on loopback; (gateway, client, key)."""
    providers = {"vendorA": VendorA(latency_ms=(5, 5), failure_rate=0.5, seed=3),
                 "vendorB": VendorB(latency_ms=(0, 0), rate_limit_rate=0.0, seed=2)}
    gw = Gateway.open(tmp_path / "m.duckdb", providers=providers,
                      retry=RetryPolicy(backoff_base_s=0.0, backoff_cap_s=0.0))
    _, key = gw.create_tenant("Metered")
    with LiveServer(create_app(gw, operator_secret=SECRET)) as live, \
            httpx.Client(base_url=live.url, timeout=20) as client:
        yield gw, client, key
    gw.close()


def test_requests_provider_calls_tokens_and_cost_agree_with_the_database(served):
    gw, client, key = served
    headers = {"X-API-Key": key}
    agent = client.post("/v1/agents", headers=headers, json={
        "name": "M", "primaryProvider": "vendorA", "fallbackProvider": "vendorB", "systemPrompt": "x"}).json()["agent"]
    session = client.post("/v1/sessions", headers=headers, json={"agentId": agent["id"]}).json()["session"]
    for i in range(12):
        assert client.post(f"/v1/sessions/{session['id']}/messages", headers=headers,
                           json={"role": "user", "content": f"hello {i}"}).status_code == 201
    client.get("/v1/sessions/ses_00000000000000000000/transcript", headers=headers)  # 404
    families = scrape(client)

    requests = families["vbgateway_http_requests"]
    assert value(requests, "vbgateway_http_requests_total", route="/v1/sessions/{sessionId}/messages",
                 status="201", method="POST") == 12
    assert value(requests, "vbgateway_http_requests_total", route="/v1/sessions/{sessionId}/transcript",
                 status="404") == 1
    assert not any("ses_" in s.labels.get("route", "") for s in requests)  # templates, never raw paths
    latency = families["vbgateway_http_request_duration_seconds"]
    assert value(latency, "vbgateway_http_request_duration_seconds_count",
                 route="/v1/sessions/{sessionId}/messages") == 12

    tenant = gw.list_tenants()[0].id
    calls = gw.sql("SELECT provider, coalesce(lower(error_code), 'ok') AS outcome, count(*) AS n "
                   "FROM provider_call_events GROUP BY ALL")
    for row in calls.itertuples():
        assert value(families["vbgateway_provider_calls"], "vbgateway_provider_calls_total", provider=row.provider,
                     outcome=row.outcome) == row.n
    assert "server_error" in set(calls.outcome)  # the failures are counted too
    assert value(families["vbgateway_provider_call_duration_seconds"],
                 "vbgateway_provider_call_duration_seconds_count") == calls.n.sum()

    billed = gw.sql("SELECT provider, count(*) AS n, sum(tokens_in) AS i, sum(tokens_out) AS o, "
                    "sum(cost_usd)::VARCHAR AS usd FROM usage_events GROUP BY ALL")
    for row in billed.itertuples():
        assert value(families["vbgateway_replies"], "vbgateway_replies_total", tenant=tenant,
                     provider=row.provider) == row.n
        tokens = families["vbgateway_tokens"]
        assert value(tokens, "vbgateway_tokens_total", tenant=tenant, provider=row.provider, direction="input") == row.i
        assert value(tokens, "vbgateway_tokens_total", tenant=tenant, provider=row.provider,
                     direction="output") == row.o
        assert value(families["vbgateway_cost_usd"], "vbgateway_cost_usd_total", tenant=tenant,
                     provider=row.provider) == pytest.approx(float(Decimal(row.usd)))


def test_the_named_figures_of_other_parts_are_declared_and_can_be_counted(served):
    gw, client, _ = served
    gw.metrics.count("vbgateway_budget_refusals_total", "tnt_x")
    gw.metrics.count("vbgateway_budget_refusals_total", "tnt_x")
    with pytest.raises(ValueError, match="computed when scraped"):
        gw.metrics.gauge("vbgateway_breaker_state", "")
    families = scrape(client)
    assert value(families["vbgateway_budget_refusals"], "vbgateway_budget_refusals_total", tenant="tnt_x") == 2
    assert "vbgateway_rate_limit_refusals" in families
    assert families["vbgateway_breaker_state"] == []  # a gateway without a breaker policy: no breaker series
    assert "vbgateway_provider_time_to_first_token_seconds" in families


def test_no_api_key_is_needed_on_loopback(served):
    _, client, _ = served
    assert client.get("/metrics").status_code == 200


async def _from(app, host: str, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        return await client.get("/metrics", headers=headers)


@pytest.mark.parametrize(("secret", "headers", "status", "code"), [
    (SECRET, None, 401, "OPERATOR_SECRET_REQUIRED"),
    (SECRET, {"Authorization": "Bearer wrong"}, 403, "INVALID_OPERATOR_SECRET"),
    (SECRET, {"Authorization": f"Bearer {SECRET}"}, 200, None),
    (SECRET, {"X-Operator-Secret": SECRET}, 200, None),
    (None, {"Authorization": f"Bearer {SECRET}"}, 403, "METRICS_LOOPBACK_ONLY"),
    (None, {"X-API-Key": "sk_anything"}, 403, "METRICS_LOOPBACK_ONLY"),
], ids=["no-secret", "wrong", "bearer", "header", "no-operator-secret", "tenant-key"])
def test_another_machine_needs_the_operator_secret(tmp_path, secret, headers, status, code):
    with Gateway.open(tmp_path / "m.duckdb") as gw:
        app = create_app(gw, operator_secret=secret)
        response = asyncio.run(_from(app, "192.0.2.7", headers))
        loopback_v6 = asyncio.run(_from(app, "::1"))
    assert response.status_code == status
    if code is not None:
        assert response.json()["error"]["code"] == code and "requestId" in response.json()["error"]
    assert loopback_v6.status_code == 200

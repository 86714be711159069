"""Budgets over HTTP: 402 BUDGET_EXCEEDED in the envelope, the budget in /v1/me and the rollup, the same error
class in the HTTP client, maxOutputTokens on the agent routes, and all of it in /openapi.json."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest
from api_support import assert_error, make_wav, new_tenant

import vbgateway
from vbgateway.errors import BudgetExceededError

BUDGET_KEYS = {"month", "monthlyUsd", "spentUsd", "reservedUsd", "remainingUsd", "alertAt", "alerts"}
TINY = Decimal("0.0000001")  # less than any request reserves


@pytest.fixture
def budgeted(gateway, http):
    """A tenant with an agent, a session and one billed reply, then a budget exactly that spent."""
    tenant = new_tenant(gateway, http, "Budgeted")
    session = tenant.session(tenant.agent(maxOutputTokens=64)["id"])
    reply = tenant.post(f"/v1/sessions/{session['id']}/messages", json={"content": "hello"})
    assert reply.status_code == 201, reply.text
    gateway.set_budget(tenant.id, Decimal(str(reply.json()["metadata"]["usage"]["costUsd"])) + TINY,
                       alert_at=(0.5, 1.0))
    return tenant, session


def test_me_has_no_budget_until_one_is_set_and_then_its_figures(gateway, acme):
    assert acme.get("/v1/me").json()["budget"] is None
    gateway.set_budget(acme.id, Decimal("12.5"), alert_at=(0.8,))
    body = acme.get("/v1/me").json()
    assert set(body) == {"tenant", "pricing", "key", "rateLimits", "budget"} and set(body["budget"]) == BUDGET_KEYS
    budget = body["budget"]
    assert (budget["monthlyUsd"], budget["spentUsd"], budget["reservedUsd"], budget["remainingUsd"]) == \
        (12.5, 0.0, 0.0, 12.5)
    assert budget["alertAt"] == [0.8] and budget["alerts"] == [] and budget["month"] == gateway.budgets.month


def test_a_send_that_does_not_fit_is_402_with_limit_spent_and_reserved(gateway, budgeted):
    tenant, session = budgeted
    before = gateway.get_budget(tenant.id)
    response = tenant.post(f"/v1/sessions/{session['id']}/messages", json={"content": "hello again"})
    error = assert_error(response, 402, "BUDGET_EXCEEDED")
    details = error["details"]
    assert {"limit", "spent", "reserved"} <= set(details)
    assert (details["limit"], details["spent"], details["reserved"]) == \
        (float(before.monthly_usd), float(before.spent_usd), 0.0)
    assert gateway.get_budget(tenant.id) == before  # nothing spent, nothing left reserved


def test_a_voice_send_that_does_not_fit_is_402_too(gateway, budgeted):
    tenant, session = budgeted
    response = tenant.post(f"/v1/sessions/{session['id']}/voice", files={"audio": ("a.wav", make_wav(), "audio/wav")})
    assert_error(response, 402, "BUDGET_EXCEEDED")


def test_the_rollup_carries_the_months_budget_use_and_its_alerts(gateway, budgeted):
    tenant, _ = budgeted
    body = tenant.get("/v1/usage/rollup").json()
    assert set(body) == {"range", "totals", "byProvider", "topAgentsByCost", "budget"}
    budget = body["budget"]
    assert set(budget) == BUDGET_KEYS and budget["spentUsd"] == body["totals"]["costUsd"]
    assert [a["threshold"] for a in budget["alerts"]] == [0.5]  # set below what was already spent: recorded at once
    assert set(budget["alerts"][0]) == {"threshold", "crossedAt", "spentUsd"}


def test_the_http_client_raises_the_embedded_error_class_and_reads_the_same_budget(gateway, server, budgeted):
    tenant, session = budgeted
    client = vbgateway.connect(server.url, tenant.key)
    try:
        with pytest.raises(BudgetExceededError) as info:
            asyncio.run(client.send_message(session["id"], "once more"))
        assert (info.value.code, info.value.http_status) == ("BUDGET_EXCEEDED", 402)
        remote, local = client.budget(), gateway.get_budget(tenant.id)
        assert remote is not None and local is not None
        assert (remote.monthly_usd, remote.spent_usd, remote.reserved_usd, remote.remaining_usd) == \
            (local.monthly_usd, local.spent_usd, local.reserved_usd, local.remaining_usd)
        assert remote.alert_at == local.alert_at and [a.threshold for a in remote.alerts] == [Decimal("0.5")]
    finally:
        client.close()


def test_agents_carry_max_output_tokens_over_http(acme):
    agent = acme.agent(maxOutputTokens=256)
    assert agent["maxOutputTokens"] == 256
    assert acme.agent()["maxOutputTokens"] == 1024
    updated = acme.put(f"/v1/agents/{agent['id']}", json={"maxOutputTokens": 32})
    assert updated.status_code == 200 and updated.json()["agent"]["maxOutputTokens"] == 32


@pytest.mark.parametrize("value", [0, 32_769, "64", 64.5, True, None])
def test_a_bad_max_output_tokens_is_400(acme, value):
    body = {"name": "S", "primaryProvider": "vendorA", "systemPrompt": "p", "maxOutputTokens": value}
    assert_error(acme.post("/v1/agents", json=body), 400, "VALIDATION_ERROR")
    agent = acme.agent()
    assert_error(acme.put(f"/v1/agents/{agent['id']}", json={"maxOutputTokens": value}), 400, "VALIDATION_ERROR")


def test_the_document_states_the_402_the_budget_and_max_output_tokens(server):
    spec = httpx.get(f"{server.url}/openapi.json").json()
    for path in ("/v1/sessions/{sessionId}/messages", "/v1/sessions/{sessionId}/voice"):
        assert "BUDGET_EXCEEDED" in spec["paths"][path]["post"]["responses"]["402"]["description"]
    schemas = spec["components"]["schemas"]
    for name in ("AgentSpec", "AgentPatch"):
        field = schemas[name]["properties"]["maxOutputTokens"]
        assert (field["type"], field["minimum"], field["maximum"]) == ("integer", 1, 32_768) and "anyOf" not in field
    me = schemas["MeResponse"]["properties"]["budget"]
    assert {"type": "null"} in me["anyOf"] and "budget" in schemas["RollupResponse"]["properties"]
    budget = next(name for name in schemas if name.startswith("Budget") and "Alert" not in name)
    assert set(schemas[budget]["properties"]) >= BUDGET_KEYS


def test_the_rollup_of_a_tenant_without_a_budget_keeps_the_contracts_shape(acme):
    assert set(acme.get("/v1/usage/rollup").json()) == {"range", "totals", "byProvider", "topAgentsByCost"}

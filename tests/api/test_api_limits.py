"""/v1/operator/tenants/{id}/budget and /rate-limit: a tenant's limits changed on a serving gateway, over a real server."""

from __future__ import annotations

import httpx
import pytest
from api_support import OPERATOR_SECRET, assert_error, new_tenant

OPERATOR = {"X-Operator-Secret": OPERATOR_SECRET}


def budget_url(tenant_id: str) -> str:
    return f"/v1/operator/tenants/{tenant_id}/budget"


def limit_url(tenant_id: str) -> str:
    return f"/v1/operator/tenants/{tenant_id}/rate-limit"


def send(tenant, session_id: str, text: str = "Hi") -> httpx.Response:
    return tenant.post(f"/v1/sessions/{session_id}/messages", json={"content": text})


def test_a_budget_set_while_serving_applies_to_the_next_request_and_is_stored(operator_server):
    gateway, http = operator_server
    tenant = new_tenant(gateway, http)
    session = tenant.session()
    assert http.get(budget_url(tenant.id), headers=OPERATOR).json() == {"tenantId": tenant.id, "budget": None}
    assert send(tenant, session["id"]).status_code == 201

    tight = http.put(budget_url(tenant.id), headers=OPERATOR, json={"monthlyUsd": "0.0000001"})
    assert tight.status_code == 200, tight.text
    assert tight.json()["budget"]["monthlyUsd"] == 1e-7
    assert_error(send(tenant, session["id"]), 402, "BUDGET_EXCEEDED")

    roomy = http.put(budget_url(tenant.id), headers=OPERATOR,
                     json={"monthlyUsd": "1250.75", "alertAt": [1, 0.07, 0.000123, 0.1234561]}).json()["budget"]
    # in order, as written, the seventh place rounded up
    assert (roomy["monthlyUsd"], roomy["alertAt"]) == (1250.75, [0.000123, 0.07, 0.123457, 1.0])
    assert roomy["spentUsd"] > 0 and http.get(budget_url(tenant.id), headers=OPERATOR).json()["budget"] == roomy
    assert send(tenant, session["id"]).status_code == 201
    assert gateway.sql("SELECT monthly_usd FROM budgets WHERE tenant_id = ?", [tenant.id]).monthly_usd[0] == 1250.75

    removed = http.delete(budget_url(tenant.id), headers=OPERATOR)
    assert removed.json() == {"tenantId": tenant.id, "budget": None} and gateway.get_budget(tenant.id) is None


def test_a_rate_limit_set_while_serving_applies_at_once_and_both_nulls_remove_it(operator_server):
    gateway, http = operator_server
    tenant = new_tenant(gateway, http)
    session = tenant.session()
    answer = http.put(limit_url(tenant.id), headers=OPERATOR, json={"requestsPerMinute": 1})
    assert answer.json() == {"tenantId": tenant.id,
                             "rateLimit": {"requestsPerMinute": 1, "tokensPerMinute": None}}
    assert send(tenant, session["id"]).status_code == 201
    refused = send(tenant, session["id"], "again")
    assert_error(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert int(refused.headers["Retry-After"]) >= 1
    assert http.get(limit_url(tenant.id), headers=OPERATOR).json()["rateLimit"]["requestsPerMinute"] == 1
    cleared = http.put(limit_url(tenant.id), headers=OPERATOR, json={"requestsPerMinute": None})
    assert cleared.json() == {"tenantId": tenant.id, "rateLimit": None}
    assert send(tenant, session["id"], "and again").status_code == 201


@pytest.mark.parametrize("body", [
    {"monthlyUsd": "0"}, {"monthlyUsd": "-5"}, {"monthlyUsd": 50}, {"monthlyUsd": "1e3"}, {"monthlyUsd": "50."},
    {"monthlyUsd": "1000000000000"}, {"monthlyUsd": "1.12345678901"}, {},
    {"monthlyUsd": "50", "alertAt": [0]}, {"monthlyUsd": "50", "alertAt": [1.5]},
    {"monthlyUsd": "50", "alertAt": [0.5, 0.5]}, {"monthlyUsd": "50", "alertAt": ["0.5"]},
    {"monthlyUsd": "50", "alertAt": [0.1] * 3 + [i / 20 for i in range(3, 11)]},
    {"monthlyUsd": "50", "colour": "red"},
], ids=["zero", "negative", "number", "exponent", "trailing-dot", "too-much", "11-places", "empty", "alert-zero",
        "alert-above-1", "alert-twice", "alert-text", "11-alerts", "unknown-field"])
def test_a_bad_budget_is_a_400_that_changes_nothing(operator_server, body):
    gateway, http = operator_server
    tenant = new_tenant(gateway, http)
    http.put(budget_url(tenant.id), headers=OPERATOR, json={"monthlyUsd": "50"})
    before = http.get(budget_url(tenant.id), headers=OPERATOR).json()
    assert_error(http.put(budget_url(tenant.id), headers=OPERATOR, json=body), 400, "VALIDATION_ERROR")
    assert http.get(budget_url(tenant.id), headers=OPERATOR).json() == before


@pytest.mark.parametrize("body", [{"requestsPerMinute": 0}, {"tokensPerMinute": -1}, {"requestsPerMinute": "5"},
                                  {"requestsPerMinute": 2.5}, {"requestsPerMinute": True},
                                  {"requestsPerMinute": 1_000_000_001}])
def test_a_bad_rate_limit_is_a_400_that_changes_nothing(operator_server, body):
    gateway, http = operator_server
    tenant = new_tenant(gateway, http)
    assert_error(http.put(limit_url(tenant.id), headers=OPERATOR, json=body), 400, "VALIDATION_ERROR")
    assert gateway.get_rate_limit(tenant.id) is None


def test_unknown_tenants_and_missing_secrets_are_refused(operator_server):
    gateway, http = operator_server
    tenant = new_tenant(gateway, http)
    for url in (budget_url("tnt_doesnotexist000000000"), limit_url("tnt_doesnotexist000000000")):
        assert_error(http.get(url, headers=OPERATOR), 404, "TENANT_NOT_FOUND")
    assert_error(http.put(budget_url("tnt_nobody"), headers=OPERATOR, json={"monthlyUsd": "5"}), 404,
                 "TENANT_NOT_FOUND")
    assert_error(http.put(budget_url(tenant.id), json={"monthlyUsd": "5"}), 401, "OPERATOR_SECRET_REQUIRED")
    assert_error(tenant.put(limit_url(tenant.id), json={"requestsPerMinute": 5}), 401, "OPERATOR_SECRET_REQUIRED")
    assert gateway.get_budget(tenant.id) is None and gateway.get_rate_limit(tenant.id) is None

"""/v1/operator: seeding and key minting for the local service, only with its operator secret."""

from __future__ import annotations

import httpx
import pytest
from api_support import OPERATOR_SECRET, LiveServer, assert_error, fast_providers

from vbgateway import Gateway
from vbgateway.api import create_app

SECRET = OPERATOR_SECRET


def test_seed_and_mint_with_the_secret(operator_server):
    gateway, http = operator_server
    first = http.post("/v1/operator/seed", headers={"X-Operator-Secret": SECRET})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["seeded"] is True and {t["name"] for t in body["tenants"]} >= {"Acme Corporation"}
    assert body["providers"] == sorted(gateway.providers)
    again = http.post("/v1/operator/seed", headers={"X-Operator-Secret": SECRET}).json()
    assert again["seeded"] is False and again["tenants"] == body["tenants"]  # nothing created twice
    minted = http.post("/v1/operator/api-keys", json={"tenantName": "Acme Corporation"},
                       headers={"X-Operator-Secret": SECRET})
    assert minted.status_code == 201, minted.text
    key = minted.json()["apiKey"]
    assert gateway.connect(key).tenant.name == "Acme Corporation"  # a working key of that tenant
    me = http.get("/v1/me", headers={"X-API-Key": key})
    assert me.json()["tenant"]["name"] == "Acme Corporation"


@pytest.mark.parametrize("headers, status, code", [
    ({}, 401, "OPERATOR_SECRET_REQUIRED"),
    ({"X-Operator-Secret": ""}, 401, "OPERATOR_SECRET_REQUIRED"),
    ({"X-Operator-Secret": "wrong"}, 403, "INVALID_OPERATOR_SECRET"),
    ({"X-Operator-Secret": SECRET + "x"}, 403, "INVALID_OPERATOR_SECRET"),
])
def test_never_without_the_secret(operator_server, headers, status, code):
    gateway, http = operator_server
    assert_error(http.post("/v1/operator/seed", headers=headers), status, code)
    assert_error(http.post("/v1/operator/api-keys", json={"tenantName": "Acme Corporation"}, headers=headers),
                 status, code)
    assert gateway.list_tenants() == []  # nothing seeded, nothing minted


def test_a_tenant_key_is_not_the_secret(operator_server):
    gateway, http = operator_server
    _, key = gateway.create_tenant("Tenant Co")
    assert_error(http.post("/v1/operator/seed", headers={"X-API-Key": key}), 401, "OPERATOR_SECRET_REQUIRED")
    assert_error(http.post("/v1/operator/seed", headers={"X-Operator-Secret": key}), 403, "INVALID_OPERATOR_SECRET")


def test_bad_requests_are_refused(operator_server):
    gateway, http = operator_server
    headers = {"X-Operator-Secret": SECRET}
    assert_error(http.post("/v1/operator/api-keys", json={"tenantName": "Nobody"}, headers=headers),
                 404, "TENANT_NOT_FOUND")
    assert_error(http.post("/v1/operator/api-keys", json={"tenantName": "  "}, headers=headers),
                 400, "VALIDATION_ERROR")
    assert_error(http.post("/v1/operator/api-keys", json={}, headers=headers), 400, "VALIDATION_ERROR")
    assert gateway.list_tenants() == []


def test_a_name_two_tenants_share_mints_no_key(operator_server):
    gateway, http = operator_server
    first, _ = gateway.create_tenant("Twin Co")
    second, _ = gateway.create_tenant("Twin Co")
    keys_before = gateway.sql("SELECT count(*) AS n FROM api_keys")["n"][0]
    answer = http.post("/v1/operator/api-keys", json={"tenantName": "Twin Co"}, headers={"X-Operator-Secret": SECRET})
    assert_error(answer, 400, "VALIDATION_ERROR")
    assert sorted(answer.json()["error"]["details"]["tenantIds"]) == sorted([first.id, second.id])
    assert gateway.sql("SELECT count(*) AS n FROM api_keys")["n"][0] == keys_before


def test_documented_with_constraints_only_when_enabled(operator_server, tmp_path):
    _, http = operator_server
    document = http.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["OperatorSecret"]["name"] == "X-Operator-Secret"
    for path in ("/v1/operator/seed", "/v1/operator/api-keys"):
        operation = document["paths"][path]["post"]
        assert operation["security"] == [{"OperatorSecret": []}]
        assert {"401", "403"} <= set(operation["responses"])
    body_ref = document["paths"]["/v1/operator/api-keys"]["post"]["requestBody"]["content"]["application/json"]
    schema = document["components"]["schemas"][body_ref["schema"]["$ref"].rsplit("/", 1)[1]]
    name = schema["properties"]["tenantName"]
    assert schema["required"] == ["tenantName"] and name["minLength"] == 1 and name["maxLength"] == 200
    assert "pattern" in name
    plain = Gateway.open(tmp_path / "plain.duckdb", providers=fast_providers())
    try:
        with LiveServer(create_app(plain)) as live:
            plain_doc = httpx.get(f"{live.url}/openapi.json").json()
            assert not any(p.startswith("/v1/operator") for p in plain_doc["paths"])
            assert httpx.post(f"{live.url}/v1/operator/seed",
                              headers={"X-Operator-Secret": SECRET}).status_code == 404
    finally:
        plain.close()

"""GET /v1/operator/breakers: breaker states and transitions for operators, over a real server."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest
from api_support import LiveServer, assert_error, new_tenant
from live_server import free_port, wait_until_serving

from vbgateway import BreakerPolicy, Gateway, RetryPolicy
from vbgateway.api import create_app
from vbgateway.cli import build_parser
from vbgateway.providers import VendorA, VendorB

SECRET = "op-secret-for-breakers-0123456789"
OPERATOR = {"X-Operator-Secret": SECRET}


def serve(gateway: Gateway):
    return LiveServer(create_app(gateway, operator_secret=SECRET))


@pytest.fixture
def failing_a(tmp_path):
    """vendorA answers 500 at once; its circuit opens at the first failure and stays open for an hour."""
    providers = {"vendorA": VendorA(latency_ms=(0, 0), failure_rate=1.0, seed=1),
                 "vendorB": VendorB(latency_ms=(0, 0), rate_limit_rate=0.0, seed=2)}
    gateway = Gateway.open(tmp_path / "b.duckdb", providers=providers, retry=RetryPolicy(attempts=1),
                           breaker=BreakerPolicy(failure_threshold=1, cooldown_s=3600))
    try:
        with serve(gateway) as live, httpx.Client(base_url=live.url, timeout=20) as http:
            yield gateway, http
    finally:
        gateway.close()


@pytest.fixture
def all_failing(tmp_path):
    """Both vendors answer 500 at once; each circuit opens at its first failure, for 90 s, and the gateway
    then fails fast."""
    providers = {"vendorA": VendorA(latency_ms=(0, 0), failure_rate=1.0, seed=1),
                 "vendorB": VendorB(latency_ms=(0, 0), failure_rate=1.0, seed=2)}
    gateway = Gateway.open(tmp_path / "f.duckdb", providers=providers, retry=RetryPolicy(attempts=1),
                           breaker=BreakerPolicy(failure_threshold=1, cooldown_s=90, when_all_open="fail_fast"))
    try:
        with serve(gateway) as live, httpx.Client(base_url=live.url, timeout=20) as http:
            yield gateway, http
    finally:
        gateway.close()


def test_every_circuit_open_is_a_503_whose_retry_after_says_when_a_probe_is_let_through(all_failing):
    gateway, http = all_failing
    tenant = new_tenant(gateway, http)
    agent = tenant.agent()
    path = f"/v1/sessions/{tenant.session(agent['id'])['id']}/messages"
    failed = tenant.post(path, json={"content": "Hi"})
    assert failed.status_code == 502 and "retry-after" not in failed.headers  # both were called and failed
    error = assert_error(tenant.post(path, json={"content": "Hi again"}), 503, "ALL_PROVIDERS_FAILED")
    wait_ms = error["details"]["retryAfterMs"]
    assert 0 < wait_ms <= 90_000
    completion = {"model": agent["id"], "messages": [{"role": "user", "content": "Hi"}]}
    for answer in (tenant.post(path, json={"content": "Hi again"}), tenant.post("/v1/chat/completions",
                                                                                json=completion)):
        assert answer.status_code == 503, answer.text
        assert 1 <= int(answer.headers["retry-after"]) <= 90
        assert int(answer.headers["retry-after"]) >= wait_ms / 1000 - 1  # whole seconds, rounded up
    document = http.get("/openapi.json").json()
    for send in ("/v1/sessions/{sessionId}/messages", "/v1/chat/completions"):
        header = document["paths"][send]["post"]["responses"]["503"]["headers"]["Retry-After"]
        assert header["schema"] == {"type": "integer", "minimum": 1} and not header["required"]


def test_an_open_circuit_and_its_transition_are_shown(failing_a):
    gateway, http = failing_a
    tenant = new_tenant(gateway, http)
    session = tenant.session()
    for _ in range(2):
        sent = tenant.post(f"/v1/sessions/{session['id']}/messages", json={"content": "Hi"})
        assert sent.is_success, sent.text
    assert [a["status"] for a in sent.json()["metadata"]["attempts"]] == ["skipped", "ok"]
    body = http.get("/v1/operator/breakers", headers=OPERATOR).json()
    assert body["policy"]["failureThreshold"] == 1 and body["policy"]["cooldownSeconds"] == 3600
    states = {b["provider"]: b for b in body["breakers"]}
    assert states["vendorA"]["state"] == "open" and states["vendorB"]["state"] == "closed"
    assert states["vendorA"]["cooldownEndsAt"] > states["vendorA"]["since"]
    (transition,) = body["transitions"]
    assert (transition["provider"], transition["fromState"], transition["toState"], transition["reason"]) == (
        "vendorA", "closed", "open", "consecutive_failures")
    assert transition["gatewayId"] == gateway.breakers.gateway_id and transition["createdAt"].endswith("Z")


def test_the_limit_keeps_the_latest_transitions(failing_a):
    gateway, http = failing_a
    tenant = new_tenant(gateway, http)
    tenant.post(f"/v1/sessions/{tenant.session()['id']}/messages", json={"content": "Hi"})
    assert http.get("/v1/operator/breakers?limit=1", headers=OPERATOR).json()["transitions"][0]["seq"] == 1
    assert_error(http.get("/v1/operator/breakers?limit=0", headers=OPERATOR), 400, "VALIDATION_ERROR")
    assert_error(http.get("/v1/operator/breakers?limit=1001", headers=OPERATOR), 400, "VALIDATION_ERROR")


def test_only_with_the_operator_secret(failing_a):
    _, http = failing_a
    assert_error(http.get("/v1/operator/breakers"), 401, "OPERATOR_SECRET_REQUIRED")
    assert_error(http.get("/v1/operator/breakers", headers={"X-Operator-Secret": "wrong"}), 403,
                 "INVALID_OPERATOR_SECRET")


def test_a_gateway_without_breakers_says_so(tmp_path):
    gateway = Gateway.open(tmp_path / "plain.duckdb")
    try:
        with serve(gateway) as live:
            body = httpx.get(f"{live.url}/v1/operator/breakers", headers=OPERATOR).json()
    finally:
        gateway.close()
    assert body == {"policy": None, "breakers": [], "transitions": []}


def test_documented_for_operators_with_the_skipped_status_and_the_503(failing_a):
    _, http = failing_a
    document = http.get("/openapi.json").json()
    operation = document["paths"]["/v1/operator/breakers"]["get"]
    assert operation["security"] == [{"OperatorSecret": []}]
    limit = next(p for p in operation["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)
    assert document["components"]["schemas"]["Attempt"]["properties"]["status"]["enum"] == ["ok", "failed", "skipped"]
    send = document["paths"]["/v1/sessions/{sessionId}/messages"]["post"]["responses"]
    assert "503" in send and "circuit breaker" in send["503"]["description"]


def test_serve_takes_a_breaker_policy_and_refuses_a_bad_one(tmp_path):
    args = build_parser().parse_args(["serve", "--breaker", '{"failure_threshold": 3, "cooldown_s": 60}'])
    assert args.breaker == BreakerPolicy(failure_threshold=3, cooldown_s=60)
    assert build_parser().parse_args(["serve", "--breaker"]).breaker == BreakerPolicy()
    assert build_parser().parse_args(["serve"]).breaker is None
    for bad in ('{"cooldown_s": 0}', "not json", '{"colour": "red"}'):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["serve", "--breaker", bad])
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o600)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "vbgateway.cli", "serve", "--db", str(tmp_path / "s.duckdb"),
                                "--port", str(port), "--operator-secret-file", str(secret_file), "--log-level",
                                "warning", "--breaker", '{"failure_threshold": 3}'],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", process)
        body = httpx.get(f"http://127.0.0.1:{port}/v1/operator/breakers", headers=OPERATOR, timeout=5).json()
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert body["policy"]["failureThreshold"] == 3 and {b["state"] for b in body["breakers"]} == {"closed"}

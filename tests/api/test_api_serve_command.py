"""``vbgateway serve`` runs the API on a database file, logs JSON lines, and stops cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import httpx
import pytest
from live_server import free_port, wait_until_serving

from vbgateway import Gateway
from vbgateway.cli import build_parser


def test_serve_is_a_subcommand_with_the_documented_defaults():
    args = build_parser().parse_args(["serve", "--db", "x.duckdb"])
    assert (args.db, args.host, args.port) == ("x.duckdb", "127.0.0.1", 3000)


def test_serve_answers_v1_over_a_seeded_database_and_stops_on_sigint(tmp_path):
    db = tmp_path / "served.duckdb"
    with Gateway.open(db) as gw:
        tenant, key = gw.create_tenant("Served Corp")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "vbgateway.cli", "serve", "--db", str(db), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", process)
        response = httpx.get(f"http://127.0.0.1:{port}/v1/me", headers={"X-API-Key": key}, timeout=5)
        assert response.status_code == 200 and response.json()["tenant"]["id"] == tenant.id
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    log_lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(e["route"] == "/v1/me" and e["status"] == 200 and e["tenantId"] == tenant.id for e in log_lines)
    assert key not in stderr
    with Gateway.open(db) as gw:  # released: the file opens again
        assert gw.get_tenant(tenant.id).name == "Served Corp"


def test_cors_origin_is_repeatable_and_checked():
    args = build_parser().parse_args(["serve", "--cors-origin", "https://Ops.Example.com/",
                                      "--cors-origin", "http://10.1.2.3:8080"])
    assert args.cors_origin == ["https://ops.example.com", "http://10.1.2.3:8080"]
    assert build_parser().parse_args(["serve"]).cors_origin == []
    for bad in ("ops.example.com", "https://ops.example.com/dashboard", "ftp://ops.example.com", "*"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["serve", "--cors-origin", bad])


DASHBOARD = "https://ops.example.com"


def test_a_dashboard_on_its_own_origin_passes_preflight_and_reads_the_headers_it_needs(tmp_path):
    """A real server from `vbgateway serve --cors-origin`, asked as a browser asks: preflight, then the call."""
    db = tmp_path / "cors.duckdb"
    with Gateway.open(db) as gw:
        _, key = gw.create_tenant("Cors Corp")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "vbgateway.cli", "serve", "--db", str(db), "--port", str(port),
                                "--cors-origin", DASHBOARD, "--cors-origin", "https://backup.example.com",
                                "--log-level", "warning"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process)
        preflight = httpx.options(f"{url}/v1/sessions/ses_x/messages", headers={
            "Origin": DASHBOARD, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key, idempotency-key, x-correlation-id, content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == DASHBOARD
        allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
        assert {"x-api-key", "idempotency-key", "x-correlation-id", "content-type"} <= allowed
        call = httpx.get(f"{url}/v1/agents", headers={"Origin": DASHBOARD, "X-API-Key": key,
                                                      "X-Correlation-Id": "from-the-dashboard"})
        assert call.status_code == 200 and call.headers["access-control-allow-origin"] == DASHBOARD
        exposed = {h.strip().lower() for h in call.headers["access-control-expose-headers"].split(",")}
        assert {"x-request-id", "x-correlation-id", "idempotency-key"} <= exposed
        assert call.headers["x-correlation-id"] == "from-the-dashboard"
        other = httpx.options(f"{url}/v1/agents", headers={"Origin": "https://evil.example",
                                                           "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in other.headers
        local = httpx.options(f"{url}/v1/agents", headers={"Origin": "http://localhost:5173",
                                                           "Access-Control-Request-Method": "GET"})
        assert local.headers["access-control-allow-origin"] == "http://localhost:5173"  # still the default
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


def test_without_cors_origin_only_localhost_pages_are_allowed(tmp_path):
    db = tmp_path / "plain.duckdb"
    Gateway.open(db).close()
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "vbgateway.cli", "serve", "--db", str(db), "--port", str(port),
                                "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process)
        for origin, granted in ((DASHBOARD, False), ("http://127.0.0.1:8080", True), ("http://localhost", True)):
            response = httpx.options(f"{url}/v1/me", headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
            assert ("access-control-allow-origin" in response.headers) is granted, origin
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


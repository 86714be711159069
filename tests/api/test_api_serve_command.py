"""``vbgateway serve`` runs the API on a database file, logs JSON lines, and stops cleanly."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import httpx

from vbgateway import Gateway
from vbgateway.cli import build_parser


def test_serve_is_a_subcommand_with_the_documented_defaults():
    args = build_parser().parse_args(["serve", "--db", "x.duckdb"])
    assert (args.db, args.host, args.port) == ("x.duckdb", "127.0.0.1", 3000)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_answers_v1_over_a_seeded_database_and_stops_on_sigint(tmp_path):
    db = tmp_path / "served.duckdb"
    with Gateway.open(db) as gw:
        tenant, key = gw.create_tenant("Served Corp")
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "vbgateway.cli", "serve", "--db", str(db), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/v1/me", headers={"X-API-Key": key}, timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, "vbgateway serve did not come up"
                time.sleep(0.1)
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

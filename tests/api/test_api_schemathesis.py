"""Schemathesis with every check against a real server: the OpenAPI document tells the truth.

The ``schemathesis`` command (a dev dependency) reads ``/openapi.json`` from a
live uvicorn server on loopback and runs all its phases (coverage, fuzzing,
stateful chains through the links it infers) with ``--checks all``: no 5xx,
only documented status codes, headers and bodies, every request the document
calls valid served, every invalid one refused, 405 with ``Allow`` for
undeclared methods, authentication enforced. Deterministic generation and a
bound on examples per operation keep it repeatable and under a minute or so.

``schemathesis_hooks.py`` supplies the three rules a JSON Schema cannot state
(``from`` <= ``to``, fallback != primary, audio that is a real recording).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from api_support import LiveServer, fast_providers

from vbgateway import Gateway
from vbgateway.api import create_app

HERE = Path(__file__).parent
MAX_EXAMPLES = 30
AGENT = "Schemathesis Agent"  # the model the hooks give chat completions (schemathesis_hooks.KNOWN_AGENT)
OPERATOR_SECRET = "schemathesis-operator-secret"  # the operator routes are checked too (a service's app)


@pytest.mark.slow
def test_schemathesis_finds_no_failure_with_all_checks(tmp_path):
    gateway = Gateway.open(tmp_path / "schemathesis.duckdb", providers=fast_providers())
    try:
        tenant, key = gateway.create_tenant("Schemathesis Corp")
        gateway.connect(key).create_agent(name=AGENT, primary_provider="vendorA", system_prompt="You help.")
        with LiveServer(create_app(gateway, operator_secret=OPERATOR_SECRET)) as live:
            env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks", "SCHEMATHESIS_TENANT_ID": tenant.id,
                   "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
            run = subprocess.run(
                [sys.executable, "-m", "schemathesis.cli", "run", f"{live.url}/openapi.json",
                 "--header", f"X-API-Key: {key}", "--header", f"Authorization: Bearer {key}",
                 "--header", f"X-Operator-Secret: {OPERATOR_SECRET}",
                 "--checks", "all", "--generation-deterministic",
                 "--max-examples", str(MAX_EXAMPLES), "--workers", "1",
                 "--request-timeout", "20", "--no-color"],
                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    finally:
        gateway.close()
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-6000:]
    assert "No issues found" in report, report[-6000:]
    assert "Selected: 26/26" in report and "Tested: 26" in report  # every operation: /health, /metrics, /v1/operator
    tested_phases = [phase for phase in ("Coverage", "Fuzzing", "Stateful") if f"✅ {phase}" in report]
    assert tested_phases == ["Coverage", "Fuzzing", "Stateful"], report[-3000:]

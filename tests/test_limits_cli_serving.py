"""``vbgateway budget set`` and ``limits set`` while ``vbgateway serve`` holds the database: the serving gateway
changes at once (through its operator routes), and a real client sees it on its next request."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from live_server import free_port, wait_until_serving

from vbgateway import Gateway
from vbgateway.cli import main

SECRET = "op-secret-for-the-cli-0123456789"


class Served:
    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "served.duckdb"
        with Gateway.open(self.db) as gw:
            tenant, self.key = gw.create_tenant("Acme Corporation")
            client = gw.connect(self.key)
            agent = client.create_agent(name="Support", primary_provider="vendorB", system_prompt="Hi.")
            self.session_id = client.create_session(agent.id).id
        self.tenant_id = tenant.id
        self.secret_file = tmp_path / "secret"
        self.secret_file.write_text(SECRET)
        self.secret_file.chmod(0o600)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vbgateway.cli", "serve", "--db", str(self.db), "--port", str(port),
             "--operator-secret-file", str(self.secret_file), "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until_serving(self.url, self.process)

    def cli(self, *args: str) -> int:
        return main([*args, "--db", str(self.db), "--url", self.url, "--operator-secret-file", str(self.secret_file)])

    def send(self, text: str = "Hi") -> int:
        return httpx.post(f"{self.url}/v1/sessions/{self.session_id}/messages", json={"content": text},
                          headers={"X-API-Key": self.key}, timeout=20).status_code

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        _, stderr = self.process.communicate(timeout=30)
        assert self.process.returncode == 0, stderr


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


def test_budget_set_changes_the_serving_gateway_at_once_and_is_stored(served, capsys):
    assert served.send() == 201
    assert served.cli("budget", "set", "Acme Corporation", "--monthly-usd", "0.0000001", "--alert-at", "0.5,1") == 0
    assert f"tenant {served.tenant_id}: budget 0.0000001 USD" in capsys.readouterr().out
    assert served.send() == 402  # the serving gateway refuses the very next request
    assert served.cli("budget", "set", served.tenant_id, "--monthly-usd", "20") == 0
    assert "budget 20 USD" in capsys.readouterr().out and served.send() == 201
    served.stop()
    with Gateway.open_reader(served.db) as gw:
        budget = gw.get_budget(served.tenant_id)
    assert budget is not None and (budget.monthly_usd, budget.alert_at) == (20, [Decimal("0.5"), Decimal("0.8"), 1])


def test_limits_set_and_budget_remove_on_the_serving_gateway(served, capsys):
    assert served.cli("limits", "set", "Acme Corporation", "--rpm", "1") == 0
    assert "rate limit 1 requests/min" in capsys.readouterr().out
    assert [served.send(), served.send()] == [201, 429]
    assert served.cli("limits", "set", served.tenant_id, "--remove") == 0
    assert "rate limit none" in capsys.readouterr().out and served.send() == 201
    served.cli("budget", "set", served.tenant_id, "--monthly-usd", "0.0000001")
    assert served.cli("budget", "set", served.tenant_id, "--remove") == 0
    assert "budget removed" in capsys.readouterr().out and served.send() == 201


def test_without_the_gateway_the_file_is_busy_and_half_the_options_are_refused(served, capsys):
    assert main(["budget", "set", served.tenant_id, "--monthly-usd", "5", "--db", str(served.db)]) != 0
    assert "DATABASE_BUSY" in capsys.readouterr().err
    assert main(["budget", "set", served.tenant_id, "--monthly-usd", "5", "--db", str(served.db),
                 "--url", served.url]) != 0
    assert "VALIDATION_ERROR" in capsys.readouterr().err
    wrong = served.secret_file.with_name("wrong")
    wrong.write_text("not-the-secret")
    wrong.chmod(0o600)
    assert main(["limits", "set", served.tenant_id, "--rpm", "5", "--db", str(served.db), "--url", served.url,
                 "--operator-secret-file", str(wrong)]) != 0
    assert "INVALID_OPERATOR_SECRET" in capsys.readouterr().err and served.send() == 201

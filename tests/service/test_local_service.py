"""The local service's life: found, reused, replaced when stale, started once, stopped cleanly or when idle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from vbgateway.client.service import (
    ensure_service,
    find_service,
    operator_secret_path,
    read_secret_file,
    service_file_path,
    stop_service,
)
from vbgateway.errors import GatewayError
from vbgateway.widgets import open_workbench

REPO = Path(__file__).parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "data" / "svc.duckdb"
    yield path
    stop_service(path)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_started_once_then_reused_with_private_files(db):
    first = ensure_service(db)
    assert httpx.get(f"{first.url}/health").json()["status"] == "ok"
    assert first.url.startswith("http://127.0.0.1:")
    again = ensure_service(db)
    assert again == first
    assert json.loads(service_file_path(db).read_text())["pid"] == first.pid
    assert mode(service_file_path(db)) == mode(operator_secret_path(db)) == 0o600
    assert find_service(db) == first


def test_a_stale_file_is_replaced(db):
    db.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    service_file_path(db).write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": dead.pid,
                                                 "started_at": "2026-01-01T00:00:00+00:00"}))
    assert find_service(db) is None
    started = ensure_service(db)
    assert started.pid != dead.pid and find_service(db) == started
    stop_service(db)
    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:  # a live process that does not answer /health is stale too
        service_file_path(db).write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": silent.pid,
                                                     "started_at": "x"}))
        assert find_service(db) is None
        replaced = ensure_service(db)
        assert replaced.pid not in (silent.pid, started.pid) and find_service(db) == replaced
        assert silent.poll() is None  # replaced, not killed: it was never a service
    finally:
        silent.kill()
        silent.wait()


def test_two_kernels_starting_at_once_start_one_service(db):
    code = "import sys; from vbgateway.client.service import ensure_service; print(ensure_service(sys.argv[1]).pid)"
    racers = [subprocess.Popen([sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, text=True, env=ENV)
              for _ in range(3)]
    pids = {racer.communicate(timeout=120)[0].strip() for racer in racers}
    assert len(pids) == 1 and pids != {""}


def test_the_kernel_that_started_it_dies_and_the_others_carry_on(db):
    code = ("import sys, time; from vbgateway.widgets import open_workbench; b = open_workbench(sys.argv[1]); "
            "print(b.api_key, flush=True); time.sleep(600)")
    starter = subprocess.Popen([sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, text=True, env=ENV)
    key = starter.stdout.readline().strip()
    starter.send_signal(signal.SIGKILL)
    starter.wait()
    bench = open_workbench(db)  # the next kernel: same service, same demo key, nothing to wait for
    assert bench.api_key == key
    assert bench.gateway.connect(key).list_agents()


def test_stop_leaves_a_complete_database_and_no_service_file(db):
    bench = open_workbench(db)
    client = bench.gateway.connect(bench.api_key)
    agent = client.create_agent(name="Kept", primary_provider="vendorA", system_prompt="Hi")
    pid = bench.gateway.info.pid
    assert stop_service(db).pid == pid
    assert not service_file_path(db).exists() and find_service(db) is None
    assert not Path(f"{db}.journal").exists()
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT name FROM agents WHERE id = ?", [agent.id]).fetchone() == ("Kept",)
    assert stop_service(db) is None  # nothing left to stop


def test_an_idle_service_stops_by_itself(db):
    info = ensure_service(db, idle_minutes=0.02)  # 1.2 s without a request
    deadline = time.monotonic() + 30
    while _running(info.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(info.pid)
    assert not service_file_path(db).exists() and find_service(db) is None
    with duckdb.connect(str(db), read_only=True) as con:  # closed: the file is free and complete
        assert con.execute("SELECT count(*) FROM tenants").fetchone()[0] == 0


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def test_the_service_command(db):
    cli = [sys.executable, "-m", "vbgateway.cli", "service"]
    started = subprocess.run([*cli, "start", "--db", str(db)], capture_output=True, text=True, env=ENV, timeout=120)
    assert started.returncode == 0 and "runs at http://127.0.0.1:" in started.stdout, started.stderr
    status = subprocess.run([*cli, "status", "--db", str(db)], capture_output=True, text=True, env=ENV, timeout=60)
    assert status.returncode == 0 and find_service(db).url in status.stdout
    stopped = subprocess.run([*cli, "stop", "--db", str(db)], capture_output=True, text=True, env=ENV, timeout=120)
    assert stopped.returncode == 0 and "the database is complete" in stopped.stdout
    status = subprocess.run([*cli, "status", "--db", str(db)], capture_output=True, text=True, env=ENV, timeout=60)
    assert status.returncode == 1 and "no service runs" in status.stdout


def test_the_service_command_starts_a_service_with_circuit_breakers(db):
    cli = [sys.executable, "-m", "vbgateway.cli", "service", "start", "--db", str(db)]

    def start(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *extra], capture_output=True, text=True, env=ENV, timeout=120)

    refused = start("--breaker", '{"failure_threshold": 0}')
    assert refused.returncode == 2 and "not a breaker policy" in refused.stderr and find_service(db) is None
    started = start("--breaker", '{"failure_threshold": 3, "cooldown_s": 60}')
    assert started.returncode == 0 and "with circuit breakers {" in started.stdout, started.stderr
    service = find_service(db)
    secret = read_secret_file(operator_secret_path(db))
    body = httpx.get(f"{service.url}/v1/operator/breakers", headers={"X-Operator-Secret": secret}, timeout=30).json()
    assert (body["policy"]["failureThreshold"], body["policy"]["cooldownSeconds"]) == (3, 60)
    again = start()  # a plain start reuses it, and says what it has
    assert again.returncode == 0 and find_service(db).pid == service.pid and "with circuit breakers {" in again.stdout
    other = start("--breaker", '{"failure_threshold": 5}')
    assert other.returncode == 1 and "vbgateway service stop" in other.stdout and find_service(db).pid == service.pid


def test_a_secret_file_others_can_read_is_refused(db):
    ensure_service(db)
    stop_service(db)
    operator_secret_path(db).chmod(0o644)
    with pytest.raises(GatewayError) as refused:
        ensure_service(db)
    assert refused.value.code == "OPERATOR_SECRET_EXPOSED" and find_service(db) is None


def test_a_service_file_copied_with_another_database_is_not_used(db, tmp_path):
    info = ensure_service(db)
    copy = tmp_path / "copy" / "svc.duckdb"
    copy.parent.mkdir()
    service_file_path(copy).write_text(service_file_path(db).read_text())
    try:
        assert find_service(copy) is None
        assert ensure_service(copy).pid != info.pid
    finally:
        stop_service(copy)


def test_budget_and_limits_set_go_through_the_running_service(db, capsys):
    from vbgateway.cli import main

    service = ensure_service(db)
    secret = {"X-Operator-Secret": operator_secret_path(db).read_text().strip()}
    tenant = httpx.post(f"{service.url}/v1/operator/seed", headers=secret).json()["tenants"][0]
    assert main(["budget", "set", tenant["name"], "--monthly-usd", "75", "--db", str(db)]) == 0  # no --url
    assert f"tenant {tenant['id']}: budget 75 USD" in capsys.readouterr().out
    assert main(["limits", "set", tenant["id"], "--tpm", "5000", "--db", str(db)]) == 0
    budget = httpx.get(f"{service.url}/v1/operator/tenants/{tenant['id']}/budget", headers=secret).json()["budget"]
    limit = httpx.get(f"{service.url}/v1/operator/tenants/{tenant['id']}/rate-limit", headers=secret).json()
    assert budget["monthlyUsd"] == 75 and limit["rateLimit"] == {"requestsPerMinute": None, "tokensPerMinute": 5000}

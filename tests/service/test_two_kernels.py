"""Two kernels on one database at the same time, through its local service (real processes, real HTTP).

Each "kernel" is a separate Python process running ``kernel_driver.py``: it
opens the workbench as a notebook does and drives the real panels. What one
does must show in the other's panels on their next refresh, within a second.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from vbgateway.client.service import find_service, stop_service

HERE = Path(__file__).parent
REPO = HERE.parents[1]


class Kernel:
    def __init__(self, db: Path, reports: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen([sys.executable, str(HERE / "kernel_driver.py"), str(db), str(reports)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.ready = self.read()

    def read(self) -> dict:
        line = self.process.stdout.readline()
        assert line, f"the kernel process ended (status {self.process.wait()})"
        return json.loads(line)

    def ask(self, **command: object) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        answer = self.read()
        assert answer["failures"] == [], answer
        return answer

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write(json.dumps({"do": "exit"}) + "\n")
            self.process.stdin.close()
            self.process.wait(timeout=30)


def messages_tile(tiles_html: str) -> int:
    match = re.search(r'<div class="label">Messages</div><div class="value">([\d,]+)</div>', tiles_html)
    assert match, tiles_html[:500]
    return int(match.group(1).replace(",", ""))


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "data" / "shared.duckdb"
    yield path
    stop_service(path)


def test_a_reply_in_one_kernel_shows_in_the_others_usage_and_agent_edits_in_its_list(db, tmp_path):
    chat_kernel = Kernel(db, tmp_path / "reports")
    usage_kernel = Kernel(db, tmp_path / "reports")
    try:
        assert chat_kernel.ready["ready"] == usage_kernel.ready["ready"] == "HttpTenantClient"
        assert chat_kernel.ready["pid"] == usage_kernel.ready["pid"]  # one service for both
        before = messages_tile(usage_kernel.ask(do="usage")["tiles"])
        sent = chat_kernel.ask(do="send", text="Where is my order?")
        assert sent["cost"] is not None, sent
        seen_after = time.monotonic()
        after = usage_kernel.ask(do="usage")
        assert time.monotonic() - seen_after < 1.0
        assert messages_tile(after["tiles"]) > before
        assert after["status"] == "" and sent["cost"] in after["events"]  # the reply is a recent event

        renamed = usage_kernel.ask(do="rename", name="Renamed In Kernel Two")
        assert renamed["saved"] == "Renamed In Kernel Two", renamed
        listed = chat_kernel.ask(do="agents")["agents"]
        assert any(label.startswith("Renamed In Kernel Two") for label in listed), listed
    finally:
        chat_kernel.close()
        usage_kernel.close()
    assert find_service(db) is not None  # both kernels gone, the service stays for the next one
    stop_service(db)
    with duckdb.connect(str(db), read_only=True) as con:  # complete once stopped
        assert con.execute("SELECT count(*) FROM usage_events").fetchone()[0] >= 1
        assert con.execute("SELECT count(*) FROM agents WHERE name = 'Renamed In Kernel Two'").fetchone()[0] == 1


def test_a_report_runs_while_the_service_serves_and_the_kernels_carry_on(db, tmp_path):
    kernel = Kernel(db, tmp_path / "reports")
    try:
        kernel.ask(do="send", text="Bill me, please")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        report = subprocess.run([sys.executable, "-m", "vbgateway.cli", "report", "usage", "--db", str(db),
                                 "--all-tenants", "--month", "current", "--out", str(tmp_path / "out"), "--quiet"],
                                capture_output=True, text=True, env=env, timeout=300)
        assert report.returncode == 0, report.stderr[-3000:]
        assert list((tmp_path / "out" / "usage").rglob("*.html"))
        assert kernel.ask(do="send", text="And once more")["cost"] is not None  # the service still serves
    finally:
        kernel.close()

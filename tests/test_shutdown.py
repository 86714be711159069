"""A stopped gateway leaves a complete database: the DuckDB file alone, holding every acknowledged reply.

However the process ends short of a crash (``vbgateway serve`` stopped by
SIGTERM or SIGINT, a script that never calls ``close``, a notebook kernel shut
down or restarted), plain DuckDB opened read-only finds every reply the
gateway acknowledged, and no journal, ``.readers``, ``.handoff`` or ``.wal``
is left beside the file. After ``kill -9`` nothing is lost either: the next
open applies the journal. Everything here runs in real processes over a real
file, the server over real HTTP on loopback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import httpx
import pytest
from live_server import free_port, wait_until_serving
from test_crash_recovery import Child, run_until_acks
from test_reader_handoff import Writer

from vbgateway import Gateway, GatewayError, VirtualClock
from vbgateway.store.handoff import ReaderLease, WriterLease

ROOT = Path(__file__).resolve().parents[1]
FAST_PROVIDERS = """{"vendorA": VendorA(latency_ms=(0, 0), failure_rate=0.0, seed=1),
                     "vendorB": VendorB(latency_ms=(0, 0), rate_limit_rate=0.0, seed=2)}"""


def side_files(db: Path) -> list[str]:
    """What lies beside the database file that belongs to it (journal, lock file, requests, WAL)."""
    return sorted(p.name for p in db.parent.iterdir() if p.name.startswith(db.name) and p != db)


def stored(db: Path) -> dict[str, list[str]]:
    """What a plain DuckDB client sees, read-only: billed message ids, assistant and user message ids."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        def ids(sql: str) -> list[str]:
            return sorted(row[0] for row in con.execute(sql).fetchall())
        return {"billed": ids("SELECT message_id FROM usage_events"),
                "assistant": ids("SELECT id FROM messages WHERE role = 'assistant'"),
                "user": ids("SELECT id FROM messages WHERE role = 'user'")}
    finally:
        con.close()


def assert_complete(db: Path, acknowledged: list[str]) -> None:
    """Every acknowledged reply is in the file, billed once, with its user message; nothing else is beside it."""
    assert side_files(db) == []
    seen = stored(db)
    assert seen["billed"] == seen["assistant"] == sorted(acknowledged)
    assert len(seen["user"]) == len(acknowledged)


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


# ---------------------------------------------------------------------------------------------- vbgateway serve
class Senders:
    """Threads sending replies to a live server until it stops answering; they note each acknowledged reply."""

    def __init__(self, url: str, key: str, session_id: str, threads: int) -> None:
        self.acknowledged: list[str] = []
        self.refused: list[int] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._send, args=(url, key, session_id, i), daemon=True)
                         for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def _send(self, url: str, key: str, session_id: str, number: int) -> None:
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as client:
            for i in range(10_000):
                try:
                    response = client.post(f"/v1/sessions/{session_id}/messages",
                                           json={"role": "user", "content": f"sender {number}, question {i}"})
                except httpx.TransportError:
                    return  # the server stopped
                with self._lock:
                    if response.status_code in (200, 201):
                        self.acknowledged.append(response.json()["message"]["id"])
                    else:
                        self.refused.append(response.status_code)

    def wait_for(self, count: int, server: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + 60
        while len(self.acknowledged) < count:
            assert server.poll() is None and time.monotonic() < deadline, "the server stopped answering"
            time.sleep(0.02)

    def join(self) -> list[str]:
        for thread in self._threads:
            thread.join(60)
            assert not thread.is_alive()
        return list(self.acknowledged)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stopped_by_a_signal_leaves_every_acknowledged_reply_in_the_file_alone(tmp_path: Path,
                                                                                      stop_signal: int) -> None:
    db = tmp_path / "served.duckdb"
    with Gateway.open(db) as gw:
        tenant, key = gw.create_tenant("Stopped Corp")
        client = gw.as_tenant(tenant.id)
        agent = client.create_agent(name="Support", primary_provider="vendorA", fallback_provider="vendorB",
                                    system_prompt="You are helpful.")
        session = client.create_session(agent.id)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "vbgateway.cli", "serve", "--db", str(db), "--port", str(port),
                               "--log-level", "warning"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", server)
        senders = Senders(f"http://127.0.0.1:{port}", key, session.id, threads=3)
        senders.wait_for(6, server)
        assert side_files(db)  # while it serves, replies are in the journal
        server.send_signal(stop_signal)  # with replies in flight: they finish before the gateway closes
        _, stderr = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    acknowledged = senders.join()

    assert server.returncode == 0, stderr
    assert len(acknowledged) >= 6
    assert_complete(db, acknowledged)


# ---------------------------------------------------------------------------------------------- interpreter exit
SCRIPT_WITHOUT_CLOSE = f"""
    import asyncio, sys
    from vbgateway import Gateway
    from vbgateway.providers import VendorA, VendorB

    gw = Gateway.open(sys.argv[1], providers={FAST_PROVIDERS}, flush_records=4)
    tenant, _ = gw.create_tenant("Script Corp")
    client = gw.as_tenant(tenant.id)
    agent = client.create_agent(name="A", primary_provider="vendorA", system_prompt="p")
    session = client.create_session(agent.id)

    async def main():
        return await asyncio.gather(*(client.send_message(session.id, f"question {{i}}") for i in range(30)))

    for reply in asyncio.run(main()):  # a real event loop: journal and applier threads at work
        print(reply.message.id)
    # no gw.close(): the interpreter exits with replies still in the journal
"""


def test_a_script_that_exits_without_closing_its_gateway_leaves_a_complete_file(tmp_path: Path) -> None:
    db = tmp_path / "script.duckdb"
    done = run_python(SCRIPT_WITHOUT_CLOSE, str(db))
    assert done.returncode == 0, done.stderr
    acknowledged = done.stdout.split()
    assert len(acknowledged) == 30
    assert_complete(db, acknowledged)


KERNEL_CELL = """
from vbgateway import Gateway
from vbgateway.providers import VendorA, VendorB

gw = Gateway.open({db!r}, providers={providers})
tenant, _ = gw.create_tenant("Notebook Corp")
client = gw.as_tenant(tenant.id)
agent = client.create_agent(name="A", primary_provider="vendorA", system_prompt="p")
session = client.create_session(agent.id)
for i in range(5):
    print((await client.send_message(session.id, f"question {{i}}")).message.id)
"""


@pytest.mark.parametrize("ending", ["shutdown", "restart"])
def test_a_notebook_kernel_shut_down_or_restarted_leaves_a_complete_file(tmp_path: Path, ending: str) -> None:
    from jupyter_client.manager import KernelManager

    db = tmp_path / "notebook.duckdb"
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=str(tmp_path))
    kernel = manager.client()
    kernel.start_channels()
    output: list[str] = []

    def keep_printed(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            output.append(msg["content"]["text"])

    try:
        kernel.wait_for_ready(timeout=60)
        reply = kernel.execute_interactive(KERNEL_CELL.format(db=str(db), providers=FAST_PROVIDERS), timeout=60,
                                           output_hook=keep_printed)
        assert reply["content"]["status"] == "ok", reply["content"]
        assert side_files(db)  # the gateway is open, its replies in the journal
        if ending == "restart":  # what JupyterLab's "Restart Kernel" asks of the kernel manager
            manager.restart_kernel(now=False)
            assert_complete(db, "".join(output).split())
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=ending == "restart")
    assert_complete(db, "".join(output).split())


# ---------------------------------------------------------------------------------------------- kill -9
def test_after_kill_9_nothing_is_lost_the_next_open_applies_the_journal_and_removes_it(tmp_path: Path) -> None:
    crash_db = tmp_path / "crash.duckdb"
    with Gateway.open(crash_db, clock=VirtualClock()) as gw:  # what tests/scripts/crash_child.py expects
        tenant, _ = gw.create_tenant("Crash Test")
        gw.as_tenant(tenant.id).create_agent(name="Support", primary_provider="vendorA", fallback_provider="vendorB",
                                             system_prompt="You are helpful.")
    lines = run_until_acks(Child(crash_db), 150)  # SIGKILL after 150 replies
    acknowledged = [line[1] for line in lines if line[0] == "ACK"]
    assert (crash_db.parent / f"{crash_db.name}.journal").stat().st_size > 0  # replies DuckDB does not hold yet

    with Gateway.open_reader(crash_db) as reader:  # even a read-only open applies what the crash left
        billed = set(reader.sql("SELECT message_id FROM usage_events").message_id)
    assert side_files(crash_db) == []
    seen = stored(crash_db)
    assert set(acknowledged) <= set(seen["billed"]) == set(seen["assistant"])
    assert len(seen["billed"]) == len(set(seen["billed"])) == len(billed)
    assert len(acknowledged) <= len(billed) <= len(acknowledged) + 1  # at most the reply in flight at the kill


# ---------------------------------------------------------------------------------------------- close itself
def test_closing_twice_is_harmless_and_a_closed_gateway_refuses_replies_instead_of_losing_them(
        tmp_path: Path) -> None:
    db = tmp_path / "twice.duckdb"
    gw = Gateway.open(db)
    tenant, _ = gw.create_tenant("Twice Corp")
    client = gw.as_tenant(tenant.id)
    agent = client.create_agent(name="A", primary_provider="vendorB", system_prompt="p")
    session = client.create_session(agent.id)
    gw.close()
    gw.close()
    assert side_files(db) == []

    with pytest.raises(GatewayError) as caught:
        client.create_session(agent.id)
    assert caught.value.code == "DATABASE_ERROR"
    with Gateway.open(db) as again:
        assert list(again.sql("SELECT id FROM sessions").id) == [session.id]


def test_a_reader_of_a_file_nobody_holds_leaves_it_alone(tmp_path: Path) -> None:
    db = tmp_path / "read.duckdb"
    with Gateway.open(db) as gw:
        gw.create_tenant("Read Corp")
    with Gateway.open_reader(db) as reader:
        assert side_files(db) == [f"{db.name}.handoff", f"{db.name}.readers"]
        assert list(reader.sql("SELECT name FROM tenants").name) == ["Read Corp"]
    assert side_files(db) == []
    reader.close()  # again: nothing to do


def test_a_writer_stopped_while_its_file_is_lent_applies_everything_once_the_reader_leaves(tmp_path: Path) -> None:
    db = tmp_path / "lent.duckdb"
    writer = Writer(db)
    writer.wait_for(20)
    reader = Gateway.open_reader(db, wait_s=30)  # the writer lends the file and goes on replying to its journal
    writer.wait_for(len(writer.snapshot()) + 20)
    writer.proc.stdin.close()  # type: ignore[union-attr]  # stop: its close waits for the file
    time.sleep(0.3)
    assert writer.proc.poll() is None  # ...which the reader still holds
    reader.close()
    assert writer.proc.wait(60) == 0, writer.proc.stderr.read()  # type: ignore[union-attr]
    assert_complete(db, writer.snapshot())


def test_a_reader_waiting_while_the_writer_closes_gets_the_file_and_removes_the_side_files_as_it_leaves(
        tmp_path: Path) -> None:
    db = tmp_path / "waiting.duckdb"
    writer = WriterLease(db, wait_s=1)
    got: list[ReaderLease] = []
    waiting = threading.Thread(target=lambda: got.append(ReaderLease(db, wait_s=30)))
    waiting.start()
    while not any((tmp_path / f"{db.name}.handoff").iterdir()):
        time.sleep(0.01)
    writer.close(remove_files=True)  # a reader is asking: the side files stay for it
    waiting.join(30)
    assert got, "the reader never got the file"
    with pytest.raises(GatewayError) as caught:  # a new writer waits for that reader
        WriterLease(db, wait_s=0.3)
    assert caught.value.code == "DATABASE_BUSY"
    got[0].close()
    assert side_files(db) == []


def test_a_writer_waiting_while_the_last_reader_removes_the_lock_file_locks_the_file_now_at_that_path(
        tmp_path: Path) -> None:
    """No two processes ever hold locks on different lock files: the next reader waits for this writer."""
    db = tmp_path / "locks.duckdb"
    reader = ReaderLease(db, wait_s=1)
    got: list[WriterLease] = []
    waiting = threading.Thread(target=lambda: got.append(WriterLease(db, wait_s=30)))
    waiting.start()
    time.sleep(0.2)  # the writer has opened the lock file and waits for its lock
    reader.close()  # the last one out: removes the lock file and the request folder
    waiting.join(30)
    assert got, "the writer never got the file"
    assert (tmp_path / f"{db.name}.readers").exists()

    with pytest.raises(GatewayError) as caught:
        ReaderLease(db, wait_s=0.3)
    assert caught.value.code == "DATABASE_BUSY"
    got[0].close(remove_files=True)
    assert side_files(db) == []

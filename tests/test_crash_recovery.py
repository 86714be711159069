"""Exactly-once billing when the process is killed mid-request (docs/gateway.md, "Exactly once").

A real child process (``tests/scripts/crash_child.py``) sends messages through
a file-backed gateway on the SystemClock, printing every reply it got back.
The test kills it with SIGKILL at some moment, reopens the database and checks
that everything acknowledged is billed exactly once and nothing is half written.
"""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from vbgateway import Gateway, VirtualClock
from vbgateway.store import handle as store_handle
from vbgateway.store import journal as journal_module
from vbgateway.store.database import Store
from vbgateway.store.journal import Journal
from vbgateway.store.tables import MessageRow

SCRIPT = Path(__file__).parent / "scripts" / "crash_child.py"
ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 30.0

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


class Child:
    """A running crash_child.py whose complete stdout lines arrive on a queue."""

    def __init__(self, db: Path, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(SCRIPT), str(db), *args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:  # type: ignore[union-attr]
            if raw.endswith(b"\n"):  # a line cut by the kill was never fully printed
                self.lines.put(raw.decode().rstrip("\n"))
        self.lines.put(None)

    def next_line(self, deadline: float) -> str | None:
        try:
            return self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self.kill()
            pytest.fail("the child process stopped producing output")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def remaining_lines(self) -> list[str]:
        self._reader.join(timeout=10)
        rest = []
        while (line := self.lines.get_nowait()) is not None:
            rest.append(line)
        return rest

    def failure(self) -> str:
        return self.proc.stderr.read().decode(errors="replace")  # type: ignore[union-attr]


def run_until_acks(child: Child, wanted: int, ack_index: int = 1) -> list[list[str]]:
    """Read the child's lines until ``wanted`` ACKs, SIGKILL it, and return every line it completed."""
    deadline = time.monotonic() + DEADLINE_S
    lines: list[list[str]] = []
    acks = 0
    while acks < wanted:
        line = child.next_line(deadline)
        if line is None:
            child.proc.wait(timeout=10)
            pytest.fail(f"the child exited early ({child.proc.returncode}):\n{child.failure()}")
        lines.append(line.split())
        acks += lines[-1][0] == "ACK"
    child.kill()
    lines.extend(line.split() for line in child.remaining_lines())
    assert child.proc.returncode == -signal.SIGKILL
    return lines


@pytest.fixture
def crash_db(tmp_path: Path) -> Path:
    """A database holding tenant 'Crash Test' with an agent: vendorA first, vendorB as fallback."""
    db = tmp_path / "crash.duckdb"
    with Gateway.open(db, clock=VirtualClock()) as gw:
        tenant, _ = gw.create_tenant("Crash Test")
        gw.as_tenant(tenant.id).create_agent(name="Support", primary_provider="vendorA",
                                             fallback_provider="vendorB", system_prompt="You are helpful.",
                                             enabled_tools=["InvoiceLookup"])
    return db


def scalar(gw: Gateway, sql: str) -> int:
    return int(gw.sql(f"SELECT ({sql}) AS n")["n"][0])


def billed_costs(gw: Gateway) -> list[tuple[str, Decimal]]:
    frame = gw.sql("SELECT message_id, cost_usd::VARCHAR AS cost FROM usage_events")
    return [(m, Decimal(c)) for m, c in zip(frame["message_id"], frame["cost"])]


def assert_consistent(gw: Gateway) -> None:
    """No half-written reply and no double billing, whatever the moment of the crash."""
    assert scalar(gw, """SELECT count(*) FROM usage_events u WHERE NOT EXISTS (
        SELECT 1 FROM messages m WHERE m.id = u.message_id AND m.request_id = u.request_id
        AND m.role = 'assistant')""") == 0, "a usage event without its assistant message"
    assert scalar(gw, """SELECT count(*) FROM usage_events u WHERE NOT EXISTS (
        SELECT 1 FROM messages m WHERE m.request_id = u.request_id AND m.role = 'user')""") == 0, \
        "a usage event without its user message"
    assert scalar(gw, """SELECT count(*) FROM messages m WHERE NOT EXISTS (
        SELECT 1 FROM usage_events u WHERE u.request_id = m.request_id)""") == 0, "a message that was not billed"
    assert scalar(gw, """SELECT count(*) FROM (SELECT request_id FROM messages GROUP BY request_id
        HAVING count(*) FILTER (role = 'user') <> 1 OR count(*) FILTER (role = 'assistant') <> 1)""") == 0
    assert scalar(gw, "SELECT count(*) FROM usage_events") == scalar(
        gw, "SELECT count(DISTINCT message_id) FROM usage_events")
    assert scalar(gw, """SELECT coalesce(max(n), 0) FROM (
        SELECT count(*) AS n FROM usage_events GROUP BY request_id)""") <= 1
    assert scalar(gw, """SELECT count(*) FROM messages m WHERE NOT EXISTS (
        SELECT 1 FROM sessions s WHERE s.id = m.session_id)""") == 0, "a message in a session that was lost"


@pytest.mark.parametrize(("acks", "flush_records"), [(200, None), (237, 64), (271, 16)],
                         ids=["journal-only", "flush-every-64", "flush-every-16"])
def test_sigkill_mid_send_bills_every_acknowledged_reply_exactly_once(crash_db: Path, acks: int,
                                                                       flush_records: int | None) -> None:
    args = ["--seed", str(acks)] + (["--flush-records", str(flush_records)] if flush_records else [])
    lines = run_until_acks(Child(crash_db, *args), acks)
    acknowledged = {line[1]: Decimal(line[2]) for line in lines if line[0] == "ACK"}
    assert len(acknowledged) >= acks

    with Gateway.open(crash_db, clock=VirtualClock()) as gw:
        billed = billed_costs(gw)
        per_message = Counter(message_id for message_id, _ in billed)
        cost_of = dict(billed)

        assert {m: per_message[m] for m in acknowledged} == {m: 1 for m in acknowledged}
        assert {m: cost_of[m] for m in acknowledged} == acknowledged
        # Sends are sequential: at most the one reply in flight at the kill was committed unacknowledged.
        assert len(acknowledged) <= len(billed) <= len(acknowledged) + 1
        assert_consistent(gw)


def test_resending_every_idempotency_key_after_sigkill_bills_each_key_exactly_once(crash_db: Path) -> None:
    lines = run_until_acks(Child(crash_db, "--keyed", "--seed", "11"), 150)
    session_id = next(line[1] for line in lines if line[0] == "SESSION")
    sent = [line[1] for line in lines if line[0] == "SEND"]
    first_acks = {line[1]: (line[2], Decimal(line[3])) for line in lines if line[0] == "ACK"}
    assert sent == [f"key-{i}" for i in range(len(sent))]
    assert len(first_acks) >= 150

    resume = subprocess.run([sys.executable, str(SCRIPT), str(crash_db), "--keyed", "--seed", "12",
                             "--session", session_id, "--resume", str(len(sent))],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert resume.returncode == 0, resume.stderr
    second = [line.split() for line in resume.stdout.splitlines()]
    second_acks = {line[1]: (line[2], Decimal(line[3]), line[4] == "True") for line in second if line[0] == "ACK"}

    assert sorted(second_acks) == sorted(sent)
    for key, (message_id, cost) in first_acks.items():
        assert second_acks[key] == (message_id, cost, True), f"{key} was not replayed as first acknowledged"
    with Gateway.open(crash_db, clock=VirtualClock()) as gw:
        records = gw.sql("SELECT key, message_id FROM idempotency_records")
        stored = dict(zip(records["key"], records["message_id"]))
        billed = Counter(message_id for message_id, _ in billed_costs(gw))

        assert stored == {key: message_id for key, (message_id, _, _) in second_acks.items()}
        assert {key: billed[message_id] for key, message_id in stored.items()} == {key: 1 for key in sent}
        assert sum(billed.values()) == len(sent)
        assert_consistent(gw)


# --------------------------------------------------------------------------- crashes around a background apply
# The applier thread applies a full batch while commits go on; these stop it at each step, copy the files
# aside as a crash would leave them, and recover the copy.

START = datetime(2026, 1, 1, tzinfo=UTC)


def message_record(n: int) -> list[MessageRow]:
    return [MessageRow(f"msg_{n}", "tnt_1", "ses_1", n, "user", f"hello {n}", "chat", f"req_{n}",
                       START + timedelta(seconds=n))]


async def commit_all(store: Store, numbers: range) -> None:
    await asyncio.gather(*(store.commit_async(message_record(n)) for n in numbers))


def crash_copy(db: Path, into: Path) -> Path:
    into.mkdir()
    for suffix in ("", ".wal", ".journal"):
        source = Path(f"{db}{suffix}")
        if source.exists():
            shutil.copyfile(source, Path(f"{into / db.name}{suffix}"))
    return into / db.name


def recovered_messages(db: Path) -> tuple[list[str], int]:
    """Open (and so recover) a copied database; its message ids and applied_seq."""
    store = Store(db, now=START)
    try:
        ids = [r[0] for r in store.query_rows("SELECT id FROM messages ORDER BY id")]
        applied = store.query_rows("SELECT applied_seq FROM journal_state")[0][0]
    finally:
        store.close()
    return ids, applied


class Gate:
    """Holds the first call of a store step (before it runs, or once it returned) until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: object, name: str, *, after: bool = False) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        real = getattr(owner, name)
        calls = []

        def gated(*args: object) -> object:
            calls.append(1)
            result = real(*args) if after else None
            if len(calls) == 1:
                self.entered.set()
                assert self.release.wait(30)
            return result if after else real(*args)

        monkeypatch.setattr(owner, name, gated)


def run_commits_then_crash(tmp_path: Path, gate: Gate) -> Path:
    """Commit 10 (a full batch) and, while the gate holds its apply, 5 more; copy the files aside there."""
    db = tmp_path / "live" / "gw.duckdb"
    db.parent.mkdir()
    store = Store(db, now=START, flush_records=10)
    try:
        async def main() -> None:
            await commit_all(store, range(1, 11))
            assert await asyncio.to_thread(gate.entered.wait, 10)
            for n in range(11, 16):
                await asyncio.wait_for(store.commit_async(message_record(n)), 5)

        asyncio.run(main())
        return crash_copy(db, tmp_path / "crashed")
    finally:
        gate.release.set()
        store.close()


def test_a_crash_while_a_batch_is_in_duckdb_s_hands_recovers_every_commit_exactly_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    crashed = run_commits_then_crash(tmp_path, Gate(monkeypatch, store_handle, "apply_batch"))

    ids, applied = recovered_messages(crashed)

    assert ids == sorted(f"msg_{n}" for n in range(1, 16))
    assert applied == 15


def test_a_crash_after_the_batch_committed_but_before_its_lines_were_dropped_applies_the_rest_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped once DuckDB committed 1..10, before their lines left the journal (which holds 1..15 then)."""
    crashed = run_commits_then_crash(tmp_path, Gate(monkeypatch, store_handle.DuckHandle, "write_batch", after=True))
    assert [seq for seq, _ in Journal(None, read_path=Path(f"{crashed}.journal")).replay()] == list(range(1, 16))

    ids, applied = recovered_messages(crashed)

    assert ids == sorted(f"msg_{n}" for n in range(1, 16))
    assert applied == 15


def test_a_compaction_that_fails_leaves_the_journal_whole_and_commits_going_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def no_rename(*args: object) -> None:
        raise OSError(28, "No space left on device")

    gate = Gate(monkeypatch, store_handle, "apply_batch")
    monkeypatch.setattr(journal_module.os, "rename", no_rename)
    db = tmp_path / "gw.duckdb"
    store = Store(db, now=START, flush_records=10)
    try:
        async def main() -> None:
            await commit_all(store, range(1, 11))
            assert await asyncio.to_thread(gate.entered.wait, 10)
            await commit_all(store, range(11, 13))  # lines to keep: the compaction must copy them
            gate.release.set()
            for _ in range(500):  # the applier applies 1..10, then fails to drop their lines
                if "could not drop applied lines" in caplog.text:
                    break
                await asyncio.sleep(0.01)
            await store.commit_async(message_record(13))

        asyncio.run(main())
        assert "could not drop applied lines" in caplog.text
        assert store.pending_records == 3
        assert [seq for seq, _ in Journal(None, read_path=Path(f"{db}.journal")).replay()] == list(range(1, 14))
        assert not Path(f"{db}.journal.compact").exists()
        copy = crash_copy(db, tmp_path / "crashed")
    finally:
        gate.release.set()
        store.close()

    ids, applied = recovered_messages(copy)

    assert ids == sorted(f"msg_{n}" for n in range(1, 14))
    assert applied == 13

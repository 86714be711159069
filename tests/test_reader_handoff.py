"""Reading a database that another process is writing (reports while the gateway serves)."""

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from vbgateway import Gateway, GatewayError

SCRIPT = Path(__file__).parent / "scripts" / "busy_writer.py"


# Like busy_writer.py, but eight replies at a time and a batch applied every 16 records, so that
# readers ask for the file while the writer's applier thread is busy with DuckDB.
BATCHING_WRITER = """
import asyncio, sys, threading
from vbgateway import Gateway
from vbgateway.providers import VendorA, VendorB

providers = {"vendorA": VendorA(latency_ms=(0, 0), failure_rate=0.0, seed=1),
             "vendorB": VendorB(latency_ms=(0, 0), rate_limit_rate=0.0, seed=2)}
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
with Gateway.open(sys.argv[1], providers=providers, flush_records=16) as gw:
    tenant, _ = gw.create_tenant("Batching Corp")
    client = gw.as_tenant(tenant.id)
    agent = client.create_agent(name="Busy", primary_provider="vendorA", system_prompt="You are busy.")
    session = client.create_session(agent.id)
    print("ready", flush=True)

    async def serve():
        while not stop.is_set():
            replies = await asyncio.gather(*(client.send_message(session.id, "Still there?") for _ in range(8)))
            print("\\n".join(reply.message.id for reply in replies), flush=True)
            await asyncio.sleep(0.002)

    gw.clock.run(serve())
"""


class Writer:
    """A writing gateway in a child process (busy_writer.py by default), with its acknowledged message ids."""

    def __init__(self, db: Path, program: list[str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, *(program or [str(SCRIPT)]), str(db)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.acked: list[str] = []
        self._ready = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._ready.wait(60), self.proc.stderr.read() if self.proc.poll() is not None else "writer not ready"

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            line = line.strip()
            if line == "ready":
                self._ready.set()
            elif line:
                with self._lock:
                    self.acked.append(line)

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.acked)

    def wait_for(self, count: int) -> None:
        for _ in range(2000):
            if len(self.snapshot()) >= count:
                return
            threading.Event().wait(0.01)
        raise AssertionError(f"writer acknowledged only {len(self.snapshot())} replies")

    def stop(self) -> int:
        self.proc.stdin.close()  # type: ignore[union-attr]
        return self.proc.wait(60)


@pytest.fixture
def writer(tmp_path):
    w = Writer(tmp_path / "busy.duckdb")
    yield w
    if w.proc.poll() is None:
        w.stop()


def test_a_reader_sees_every_reply_acknowledged_before_it_opened(writer, tmp_path):
    writer.wait_for(50)
    before = set(writer.snapshot())
    with Gateway.open_reader(tmp_path / "busy.duckdb", wait_s=30) as reader:
        stored = set(reader.sql("SELECT message_id FROM usage_events").message_id)
    assert before <= stored


def test_the_writer_keeps_serving_while_a_reader_holds_the_file_and_loses_nothing(writer, tmp_path):
    writer.wait_for(20)
    with Gateway.open_reader(tmp_path / "busy.duckdb", wait_s=30) as reader:
        held_at = len(writer.snapshot())
        writer.wait_for(held_at + 30)  # replies go on being acknowledged during the read
        assert int(reader.sql("SELECT count(*) AS n FROM usage_events").n[0]) >= 20
    assert writer.stop() == 0
    acked = writer.snapshot()
    with Gateway.open_reader(tmp_path / "busy.duckdb") as reader:
        rows = reader.sql("SELECT message_id, count(*) AS n FROM usage_events GROUP BY message_id")
    assert set(acked) <= set(rows.message_id)
    assert rows.n.max() == 1


def test_several_readers_in_turn_each_see_a_growing_snapshot(writer, tmp_path):
    counts = []
    for step in range(3):
        writer.wait_for(10 * (step + 1))
        with Gateway.open_reader(tmp_path / "busy.duckdb", wait_s=30) as reader:
            counts.append(int(reader.sql("SELECT count(*) AS n FROM usage_events").n[0]))
    assert counts == sorted(counts) and counts[-1] > counts[0]


def test_readers_see_every_acknowledged_reply_while_batches_are_applied_in_the_background(tmp_path):
    db = tmp_path / "batching.duckdb"
    writer = Writer(db, ["-c", BATCHING_WRITER])
    try:
        for step in range(1, 4):
            writer.wait_for(80 * step)
            before = set(writer.snapshot())
            with Gateway.open_reader(db, wait_s=30) as reader:
                rows = reader.sql("SELECT message_id, count(*) AS n FROM usage_events GROUP BY message_id")
            assert before <= set(rows.message_id)
            assert rows.n.max() == 1
    finally:
        assert writer.stop() == 0, writer.proc.stderr.read()  # type: ignore[union-attr]
    with Gateway.open_reader(db) as reader:
        rows = reader.sql("SELECT message_id, count(*) AS n FROM usage_events GROUP BY message_id")
    assert set(writer.snapshot()) <= set(rows.message_id)
    assert rows.n.max() == 1


def test_once_the_reader_leaves_the_writer_takes_the_file_back_and_its_backlog_stays_bounded(tmp_path):
    """Lent once and never asked again, the writer still applies its replies: the journal stays short."""
    db = tmp_path / "lent-once.duckdb"
    writer = Writer(db, ["-c", BATCHING_WRITER])  # a batch is 16 records
    try:
        writer.wait_for(40)
        with Gateway.open_reader(db, wait_s=30) as reader:
            read = int(reader.sql("SELECT count(*) AS n FROM usage_events").n[0])
        left_at = len(writer.snapshot())
        writer.wait_for(left_at + 800)
        journaled = Path(str(db) + ".journal").read_bytes().count(b"\n")
        # held again: a few batches journaled at most (8 replies a group), not every reply since the read
        assert read >= 40 and journaled < 200, journaled
    finally:
        assert writer.stop() == 0, writer.proc.stderr.read()  # type: ignore[union-attr]
    with Gateway.open_reader(db) as reader:
        rows = reader.sql("SELECT message_id, count(*) AS n FROM usage_events GROUP BY message_id")
    assert set(writer.snapshot()) <= set(rows.message_id) and rows.n.max() == 1


def test_a_reader_cannot_write(writer, tmp_path):
    with Gateway.open_reader(tmp_path / "busy.duckdb", wait_s=30) as reader:
        with pytest.raises(GatewayError) as caught:
            reader.create_tenant("Intruder")
        assert caught.value.code == "DATABASE_ERROR"
        with pytest.raises(GatewayError):
            reader.sql("DELETE FROM usage_events")


def test_a_reader_of_a_database_nobody_holds_includes_what_a_crash_left_in_the_journal(tmp_path):
    db = tmp_path / "crashed.duckdb"
    gw = Gateway.open(db, flush_records=10**9)
    tenant, _ = gw.create_tenant("Crash Corp")
    client = gw.as_tenant(tenant.id)
    agent = client.create_agent(name="A", primary_provider="vendorB", system_prompt="p")
    session = client.create_session(agent.id)
    gw.store._journal.close()  # a crash: nothing applied to DuckDB, the journal holds the session
    gw.store._release_all()
    with Gateway.open_reader(db) as reader:
        assert list(reader.sql("SELECT id FROM sessions").id) == [session.id]


def test_opening_a_reader_on_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(GatewayError) as caught:
        Gateway.open_reader(tmp_path / "nope.duckdb")
    assert caught.value.code == "DATABASE_ERROR"

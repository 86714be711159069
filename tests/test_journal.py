"""Specification of the write-ahead journal (docs/gateway.md, "Exactly once").

A reply is committed by ONE checksummed, fsync'ed journal line; DuckDB gets
the rows later in batches, each batch recording ``journal_state.applied_seq``.
These tests use the ``Journal`` class directly and through ``Gateway`` over
real DuckDB files, with crashes stood in for by copying the files aside while
the gateway is still open (nothing flushed, nothing closed).
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import duckdb
import orjson
import pytest

from vbgateway import Gateway, VirtualClock
from vbgateway.errors import DatabaseBusyError, InternalError
from vbgateway.store import handle as store_handle
from vbgateway.store import journal as journal_module
from vbgateway.store.database import Store
from vbgateway.store.journal import Journal
from vbgateway.store.pending import BACKLOG_BATCHES
from vbgateway.store.tables import MessageRow, SessionRow

START = datetime(2026, 1, 1, tzinfo=UTC)


def journal_path(db: Path) -> Path:
    return Path(str(db) + ".journal")


def journal_seqs(path: Path) -> list[int]:
    """The sequence numbers a fresh reader replays from a journal file."""
    journal = Journal(path)
    try:
        return [seq for seq, _ in journal.replay()]
    finally:
        journal.close()


def seqs_in_file(path: Path) -> list[int]:
    """The sequence numbers of the complete lines of a journal a live gateway holds (and locks)."""
    return [int(line.split(b" ", 1)[0]) for line in path.read_bytes().splitlines(keepends=True)
            if line.endswith(b"\n")]


def record(n: int) -> dict:
    """A journal record shaped like the gateway's: table name -> rows of plain values (instants as text)."""
    return {"messages": [[f"msg_{n}", "tnt_1", "ses_1", n, "user", f"hello {n}", "chat", f"req_{n}",
                          (START + timedelta(seconds=n)).isoformat()]]}


def rows(n: int) -> list[MessageRow]:
    """What a commit hands the store: typed rows (here one user message)."""
    return [MessageRow(f"msg_{n}", "tnt_1", "ses_1", n, "user", f"hello {n}", "chat", f"req_{n}",
                       START + timedelta(seconds=n))]


# --------------------------------------------------------------------------- the Journal class


def test_append_then_replay_keeps_instants_as_exact_rfc3339_text_and_decimals_exactly(tmp_path: Path) -> None:
    """Instants go in as orjson writes them (their offset kept, to the microsecond): DuckDB reads that text."""
    moments = [
        datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 59, 59, 999999, tzinfo=timezone(timedelta(hours=2))),
    ]
    amounts = [Decimal("0.0000123400"), Decimal("1E-10"), Decimal("123456789012.1234567890"), Decimal("-0.5")]
    rec = {"usage_events": [["evt_1", 7, "ünïcode ✓", None, True, *moments, *amounts]]}
    journal = Journal(tmp_path / "j.journal")
    journal.append([(1, rec)])
    journal.close()

    reader = Journal(tmp_path / "j.journal")
    [(seq, replayed)] = list(reader.replay())
    reader.close()

    row = replayed["usage_events"][0]
    assert seq == 1
    assert row[:5] == ["evt_1", 7, "ünïcode ✓", None, True]
    assert row[5:7] == [m.isoformat() for m in moments]
    assert [datetime.fromisoformat(m) for m in row[5:7]] == moments
    assert row[7:] == amounts
    assert [str(a) for a in row[7:]] == [str(a) for a in amounts]  # same digits, same exponent
    assert all(isinstance(a, Decimal) for a in row[7:])


def test_a_line_of_an_older_version_with_tagged_instants_still_replays_them_as_datetimes(tmp_path: Path) -> None:
    moment = datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)
    data = orjson.dumps({"messages": [["msg_1", {"$ts": moment.isoformat()}, {"$dec": "0.10"}]]})
    (tmp_path / "j.journal").write_bytes(b"%d %08x " % (1, zlib.crc32(data)) + data + b"\n")
    reader = Journal(tmp_path / "j.journal")
    [(seq, replayed)] = list(reader.replay())
    reader.close()
    assert (seq, replayed) == (1, {"messages": [["msg_1", moment, Decimal("0.10")]]})


def test_replay_yields_records_in_append_order_with_their_sequence_numbers(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.journal")
    journal.append([(1, record(1)), (2, record(2))])
    journal.append([(3, record(3))])

    assert [seq for seq, _ in journal.replay()] == [1, 2, 3]
    assert [rec["messages"][0][0] for _, rec in journal.replay()] == ["msg_1", "msg_2", "msg_3"]
    assert journal.last_seq() == 3


def test_torn_last_line_is_ignored_on_replay_and_earlier_records_survive(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    journal = Journal(path)
    journal.append([(1, record(1)), (2, record(2))])
    journal.close()
    full_line = path.read_bytes().splitlines(keepends=True)[1]
    with open(path, "ab") as handle:  # a writer that died mid-line: no trailing newline
        handle.write(full_line.replace(b"2 ", b"3 ", 1)[:-1])

    reader = Journal(path)
    replayed = list(reader.replay())
    reader.close()

    assert [seq for seq, _ in replayed] == [1, 2]
    assert replayed[1][1] == record(2)


def test_torn_half_line_is_ignored_on_replay(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    journal = Journal(path)
    journal.append([(1, record(1))])
    journal.close()
    with open(path, "ab") as handle:
        handle.write(b'2 0badc0de {"messages":[["msg_2","tn')

    assert journal_seqs(path) == [1]


def test_line_with_wrong_crc_stops_replay_there(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    journal = Journal(path)
    journal.append([(1, record(1)), (2, record(2)), (3, record(3))])
    journal.close()
    lines = path.read_bytes().splitlines(keepends=True)
    seq, crc, data = lines[1].split(b" ", 2)
    wrong = b"%08x" % ((int(crc, 16) + 1) & 0xFFFFFFFF)
    path.write_bytes(lines[0] + b" ".join([seq, wrong, data]) + lines[2])

    assert journal_seqs(path) == [1]


def test_line_whose_json_was_altered_fails_its_crc_and_stops_replay(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    journal = Journal(path)
    journal.append([(1, record(1)), (2, record(2))])
    journal.close()
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[1].replace(b"hello 2", b"hello 9"))

    assert journal_seqs(path) == [1]


def test_journal_line_format_is_seq_crc32_of_json_then_json(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    journal = Journal(path)
    journal.append([(42, {"messages": [["msg_1"]]})])
    journal.close()

    seq, crc, data = path.read_bytes().rstrip(b"\n").split(b" ", 2)

    assert (seq, int(crc, 16)) == (b"42", zlib.crc32(data))
    assert data == b'{"messages":[["msg_1"]]}'


def test_truncate_forgets_everything(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.journal")
    journal.append([(1, record(1))])
    journal.truncate()

    assert journal.size() == 0
    assert list(journal.replay()) == []


def test_discard_through_keeps_exactly_the_later_lines_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    journal = Journal(path)
    journal.append([(1, record(1)), (2, record(2))])
    journal.append([(3, record(3))])
    journal.append([(4, record(4)), (5, record(5))])
    later = b"".join(path.read_bytes().splitlines(keepends=True)[3:])

    journal.discard_through(3)

    assert path.read_bytes() == later
    assert [seq for seq, _ in journal.replay()] == [4, 5]
    journal.append([(6, record(6))])  # appends land in the file now under the journal's name
    journal.discard_through(4)
    assert [seq for seq, _ in journal.replay()] == [5, 6]
    journal.discard_through(6)
    assert journal.size() == 0 and path.stat().st_size == 0
    journal.close()


def test_lines_appended_while_discard_through_copies_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "j.journal"
    journal, appends = Journal(path), threading.Lock()
    for n in range(1, 101):
        journal.append([(n, record(n))])
    real_copy, copies = journal_module._copy, []

    def slow_copy(*args: int) -> None:  # the bulk copy takes a while: appends go on meanwhile
        real_copy(*args)
        copies.append(args)
        if len(copies) == 1:
            threading.Event().wait(0.2)

    monkeypatch.setattr(journal_module, "_copy", slow_copy)
    stop, last = threading.Event(), [100]

    def commits() -> None:
        while not stop.is_set():
            with appends:
                journal.append([(last[-1] + 1, record(last[-1] + 1))])
                last.append(last[-1] + 1)

    writer = threading.Thread(target=commits)
    writer.start()
    journal.discard_through(60, appends)
    stop.set()
    writer.join()

    assert len(copies) == 2  # the bulk, then what came during it
    assert [seq for seq, _ in journal.replay()] == list(range(61, last[-1] + 1))
    assert last[-1] > 100
    journal.close()


def test_discard_through_keeps_the_journal_locked(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    journal = Journal(path)
    journal.append([(1, record(1)), (2, record(2))])
    journal.discard_through(1)

    with pytest.raises(DatabaseBusyError):
        Journal(path)
    journal.close()
    Journal(path).close()  # released with the journal, not before


def test_discard_through_reads_lines_another_journal_instance_wrote(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    first = Journal(path)
    first.append([(1, record(1)), (2, record(2)), (3, record(3))])
    first.close()

    second = Journal(path)
    second.discard_through(2)

    assert [seq for seq, _ in second.replay()] == [3]
    second.close()


def test_a_compaction_file_left_by_a_crash_is_ignored_and_removed(tmp_path: Path) -> None:
    """A crash before the rename leaves the journal whole; the half-made copy must never be read."""
    path = tmp_path / "j.journal"
    journal = Journal(path)
    journal.append([(1, record(1)), (2, record(2))])
    journal.close()
    leftover = tmp_path / "j.journal.compact"
    leftover.write_bytes(path.read_bytes().splitlines(keepends=True)[1][:10])

    reopened = Journal(path)

    assert [seq for seq, _ in reopened.replay()] == [1, 2]
    assert not leftover.exists()
    reopened.close()


def test_journal_without_a_path_keeps_nothing() -> None:
    journal = Journal(None)
    journal.append([(1, record(1))])

    assert not journal.durable
    assert list(journal.replay()) == []


# --------------------------------------------------------------------------- through the Gateway


def open_gateway(db: Path, **kwargs) -> Gateway:
    kwargs.setdefault("clock", VirtualClock(start=START))
    return Gateway.open(db, **kwargs)


def send_messages(gw: Gateway, api_key: str, agent_id: str, count: int, *, prefix: str = "m") -> list[str]:
    """Send ``count`` chat messages in a fresh session; returns the assistant message ids."""
    client = gw.connect(api_key)
    session = client.create_session(agent_id, customer_id="c-1")

    async def main() -> list[str]:
        ids = []
        for i in range(count):
            reply = await client.send_message(session.id, f"{prefix} {i}: where is my order?",
                                              idempotency_key=f"{prefix}-{i}")
            ids.append(reply.message.id)
        return ids

    return gw.clock.run(main())


def setup_tenant(gw: Gateway) -> tuple[str, str]:
    _, key = gw.create_tenant("Acme Corporation")
    agent = gw.connect(key).create_agent(name="Support", primary_provider="vendorA", fallback_provider="vendorB",
                                         system_prompt="You are helpful.")
    return key, agent.id


def crash_copy(db: Path, into: Path) -> Path:
    """Copy a live database (DuckDB file, its WAL, the journal) aside, as a crash would leave them."""
    into.mkdir()
    for suffix in ("", ".wal", ".journal"):
        source = Path(str(db) + suffix)
        if source.exists():
            shutil.copyfile(source, Path(str(into / db.name) + suffix))
    return into / db.name


def counts(db: Path) -> dict[str, int]:
    """Row counts read straight from DuckDB (no gateway, so no recovery)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = ("sessions", "messages", "provider_call_events", "usage_events", "idempotency_records")
        result = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
        result["applied_seq"] = con.execute("SELECT applied_seq FROM journal_state").fetchone()[0]
        result["distinct_usage_messages"] = con.execute(
            "SELECT count(DISTINCT message_id) FROM usage_events").fetchone()[0]
        return result
    finally:
        con.close()


def test_a_reply_is_journaled_before_it_reaches_duckdb(gw: Gateway, acme, agent, run) -> None:
    session = acme.create_session(agent.id)
    run(acme.send_message(session.id, "Hello"))

    assert gw.store.pending_records == 2  # the session and the reply
    assert journal_path(gw.store.path).stat().st_size > 0
    assert seqs_in_file(journal_path(gw.store.path)) == [1, 2]


def test_after_sending_and_closing_the_journal_is_gone_and_duckdb_holds_everything(db_path: Path, gw: Gateway,
                                                                                    acme, agent, run) -> None:
    session = acme.create_session(agent.id)
    replies = [run(acme.send_message(session.id, f"Question {i}?")) for i in range(5)]
    gw.close()

    assert not journal_path(db_path).exists()
    after = counts(db_path)
    assert after["sessions"] == 1
    assert after["messages"] == 10
    assert after["usage_events"] == 5
    assert after["applied_seq"] == 6
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        billed = dict(con.execute("SELECT message_id, cost_usd FROM usage_events").fetchall())
    finally:
        con.close()
    assert billed == {r.message.id: r.metadata.usage.cost_usd for r in replies}


def test_replies_are_visible_through_sql_before_any_flush_threshold(gw: Gateway, acme, agent, run) -> None:
    session = acme.create_session(agent.id)
    reply = run(acme.send_message(session.id, "Hello"))
    assert gw.store.pending_records > 0  # far below the flush threshold: nothing applied yet

    usage = gw.sql("SELECT message_id, cost_usd::VARCHAR AS cost_usd FROM usage_events")
    messages = gw.sql("SELECT role, request_id FROM messages ORDER BY position")

    assert list(usage["message_id"]) == [reply.message.id]
    assert Decimal(usage["cost_usd"][0]) == reply.metadata.usage.cost_usd
    assert list(messages["role"]) == ["user", "assistant"]
    assert set(messages["request_id"]) == {reply.metadata.request_id}


def test_replies_are_visible_in_the_transcript_before_any_flush_threshold(gw: Gateway, acme, agent, run) -> None:
    session = acme.create_session(agent.id)
    reply = run(acme.send_message(session.id, "Hello"))

    transcript = acme.transcript(session.id)

    assert [m.id for m in transcript.messages][-1] == reply.message.id
    assert [m.role for m in transcript.messages] == ["user", "assistant"]


def test_reading_applies_pending_records_and_empties_the_journal(gw: Gateway, acme, agent, run) -> None:
    session = acme.create_session(agent.id)
    run(acme.send_message(session.id, "Hello"))

    gw.sql("SELECT 1")

    assert gw.store.pending_records == 0
    assert journal_path(gw.store.path).stat().st_size == 0
    assert int(gw.sql("SELECT applied_seq FROM journal_state")["applied_seq"][0]) == 2


@pytest.fixture
def crashed(tmp_path: Path) -> tuple[Path, list[str]]:
    """A database copied aside while its gateway held 1 session + 12 replies only in the journal."""
    db = tmp_path / "live" / "gw.duckdb"
    gw = open_gateway(db, flush_records=10**9, seed=7)
    key, agent_id = setup_tenant(gw)
    message_ids = send_messages(gw, key, agent_id, 12)
    assert gw.store.pending_records == 13
    copy = crash_copy(db, tmp_path / "crashed")
    gw.close()
    return copy, message_ids


def test_crashed_database_holds_no_journaled_rows_in_duckdb(crashed: tuple[Path, list[str]]) -> None:
    db, _ = crashed

    before = counts(db)

    assert (before["messages"], before["usage_events"], before["applied_seq"]) == (0, 0, 0)
    assert journal_seqs(journal_path(db)) == list(range(1, 14))


def test_opening_applies_journal_records_above_applied_seq_exactly_once(crashed: tuple[Path, list[str]]) -> None:
    db, message_ids = crashed

    open_gateway(db).close()

    after = counts(db)
    assert after["sessions"] == 1
    assert after["messages"] == 24
    assert after["usage_events"] == 12
    assert after["idempotency_records"] == 12
    assert after["distinct_usage_messages"] == 12
    assert after["applied_seq"] == 13
    con = duckdb.connect(str(db), read_only=True)
    try:
        billed = sorted(r[0] for r in con.execute("SELECT message_id FROM usage_events").fetchall())
    finally:
        con.close()
    assert billed == sorted(message_ids)


def test_recovery_empties_the_journal(crashed: tuple[Path, list[str]]) -> None:
    db, _ = crashed

    gw = open_gateway(db)
    try:
        assert journal_path(db).stat().st_size == 0
        assert gw.store.pending_records == 0
    finally:
        gw.close()


def test_reopening_twice_more_does_not_apply_the_journal_again(crashed: tuple[Path, list[str]]) -> None:
    db, _ = crashed
    open_gateway(db).close()
    first = counts(db)

    open_gateway(db).close()
    open_gateway(db).close()

    assert counts(db) == first


def test_recovered_replies_are_replayed_for_their_idempotency_keys(crashed: tuple[Path, list[str]]) -> None:
    db, message_ids = crashed
    gw = open_gateway(db)
    try:
        tenant = gw.list_tenants()[0]
        client = gw.as_tenant(tenant.id)
        session_id = gw.sql("SELECT id FROM sessions")["id"][0]

        reply = gw.clock.run(client.send_message(session_id, "m 3: where is my order?", idempotency_key="m-3"))

        assert reply.metadata.idempotency.replayed is True
        assert reply.message.id == message_ids[3]
        assert int(gw.sql("SELECT count(*) AS n FROM usage_events")["n"][0]) == 12
    finally:
        gw.close()


def test_torn_last_line_of_a_gateway_journal_is_dropped_and_earlier_replies_survive(
        crashed: tuple[Path, list[str]]) -> None:
    db, _message_ids = crashed
    last_line = journal_path(db).read_bytes().splitlines(keepends=True)[-1]
    with open(journal_path(db), "ab") as handle:
        handle.write(last_line.replace(b"13 ", b"14 ", 1)[: len(last_line) // 2])

    open_gateway(db).close()

    after = counts(db)
    assert (after["usage_events"], after["messages"], after["applied_seq"]) == (12, 24, 13)


def test_journal_sequence_continues_after_recovery_so_a_second_crash_loses_nothing(
        tmp_path: Path, crashed: tuple[Path, list[str]]) -> None:
    db, _ = crashed
    gw = open_gateway(db, flush_records=10**9, seed=99)
    key_client = gw.as_tenant(gw.list_tenants()[0].id)
    agent_id = key_client.list_agents()[0].id
    session = key_client.create_session(agent_id)
    gw.clock.run(key_client.send_message(session.id, "after the first crash"))
    assert seqs_in_file(journal_path(db)) == [14, 15]
    second = crash_copy(db, tmp_path / "second-crash")
    gw.close()

    open_gateway(second).close()

    after = counts(second)
    assert (after["sessions"], after["usage_events"], after["messages"], after["applied_seq"]) == (2, 13, 26, 15)


def test_crash_between_duckdb_commit_and_journal_truncate_does_not_double_bill(tmp_path: Path) -> None:
    db = tmp_path / "gw.duckdb"
    gw = open_gateway(db, flush_records=10**9, seed=7)
    key, agent_id = setup_tenant(gw)
    send_messages(gw, key, agent_id, 8)
    applied_lines = journal_path(db).read_bytes()  # seq 1..9, about to be applied
    gw.close()  # applies them in one DuckDB transaction, then removes the journal
    clean = counts(db)
    assert not journal_path(db).exists()
    journal_path(db).write_bytes(applied_lines)  # as if the process died before the journal went

    open_gateway(db).close()

    assert counts(db) == clean
    assert clean["usage_events"] == clean["distinct_usage_messages"] == 8
    assert clean["applied_seq"] == 9
    assert not journal_path(db).exists()


def test_already_applied_lines_are_skipped_but_newer_lines_after_them_are_applied(tmp_path: Path) -> None:
    db = tmp_path / "gw.duckdb"
    gw = open_gateway(db, flush_records=10**9, seed=7)
    key, agent_id = setup_tenant(gw)
    send_messages(gw, key, agent_id, 3, prefix="first")
    applied_lines = journal_path(db).read_bytes()  # seq 1..4
    gw.sql("SELECT 1")  # applies seq 1..4 and truncates the journal
    send_messages(gw, key, agent_id, 2, prefix="second")  # seq 5..7, journal only
    crashed = crash_copy(db, tmp_path / "crashed")
    gw.close()
    pending_lines = journal_path(crashed).read_bytes()
    assert journal_seqs(journal_path(crashed)) == [5, 6, 7]
    # The journal as it would be had the first truncate never happened.
    journal_path(crashed).write_bytes(applied_lines + pending_lines)

    open_gateway(crashed).close()

    after = counts(crashed)
    assert (after["sessions"], after["usage_events"], after["messages"], after["applied_seq"]) == (2, 5, 10, 7)
    assert after["distinct_usage_messages"] == 5


# --------------------------------------------------------------------------- applying while committing


class BlockingApply:
    """Stands in for ``apply_batch``: the first batch waits until released (a slow DuckDB), later ones pass."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.batches: list[int] = []
        real = store_handle.apply_batch

        def apply(con: duckdb.DuckDBPyConnection, payloads: list[str]) -> None:
            self.batches.append(len(payloads))
            if len(self.batches) == 1:
                self.entered.set()
                assert self.release.wait(30)
            real(con, payloads)

        monkeypatch.setattr(store_handle, "apply_batch", apply)


def message_ids(db: Path) -> list[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return sorted(r[0] for r in con.execute("SELECT id FROM messages").fetchall())
    finally:
        con.close()


async def commit_all(store: Store, numbers: range) -> None:
    await asyncio.gather(*(store.commit_async(rows(n)) for n in numbers))


def test_commits_go_on_while_a_full_batch_is_applied_and_a_reader_then_sees_them_all(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocking = BlockingApply(monkeypatch)
    db = tmp_path / "s.duckdb"
    store = Store(db, now=START, flush_records=10)
    try:
        async def main() -> None:
            await commit_all(store, range(1, 11))  # a full batch: the applier thread takes it
            assert await asyncio.to_thread(blocking.entered.wait, 10)
            for n in range(11, 30):  # DuckDB is stuck on the batch; commits within the backlog bound must not be
                await asyncio.wait_for(store.commit_async(rows(n)), 5)

        asyncio.run(main())
        assert store.pending_records == 29
        assert seqs_in_file(journal_path(db)) == list(range(1, 30))
        seen: list[int] = []
        reader = threading.Thread(target=lambda: seen.append(int(store.query("SELECT count(*) AS n FROM messages").n[0])))
        reader.start()
        reader.join(0.3)
        assert reader.is_alive()  # a read needs DuckDB: it waits for the batch...
        blocking.release.set()
        reader.join(10)
        assert seen == [29]  # ...then sees every committed row, also those committed meanwhile
        assert store.pending_records == 0
        assert journal_path(db).stat().st_size == 0
    finally:
        blocking.release.set()
        store.close()
    assert blocking.batches == [10, 19]
    assert message_ids(db) == sorted(f"msg_{n}" for n in range(1, 30))
    assert counts(db)["applied_seq"] == 29


BOUND = BACKLOG_BATCHES * 10  # pending records at which a commit of 10-record batches waits


@pytest.fixture
def stuck(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Store, BlockingApply, Path]]:
    """A store of 10-record batches whose first batch DuckDB holds until released; closed at the end."""
    blocking = BlockingApply(monkeypatch)
    db = tmp_path / "s.duckdb"
    store = Store(db, now=START, flush_records=10)
    yield store, blocking, db
    blocking.release.set()
    store.close()


async def fill_the_backlog(store: Store, blocking: BlockingApply) -> asyncio.Future[None]:
    """A batch stuck in DuckDB, the commits below the bound acknowledged, and the one reaching it: waiting."""
    await commit_all(store, range(1, 11))
    assert await asyncio.to_thread(blocking.entered.wait, 10)
    for n in range(11, BOUND):
        await asyncio.wait_for(store.commit_async(rows(n)), 5)
    last = asyncio.ensure_future(store.commit_async(rows(BOUND)))
    await asyncio.sleep(0.3)
    assert not last.done()  # the backlog is full: acknowledged only once DuckDB catches up
    return last


def test_a_commit_waits_for_duckdb_once_it_is_backlog_batches_behind_so_memory_stays_bounded(
        stuck: tuple[Store, BlockingApply, Path]) -> None:
    store, blocking, db = stuck

    async def main() -> None:
        last = await fill_the_backlog(store, blocking)
        assert store.pending_records == BOUND  # journaled all the same
        assert seqs_in_file(journal_path(db)) == list(range(1, BOUND + 1))
        blocking.release.set()
        await asyncio.wait_for(last, 10)
        assert store.pending_records == BOUND - 10  # the stuck batch was applied
        await asyncio.wait_for(store.commit_async(rows(BOUND + 1)), 5)  # and commits flow again

    asyncio.run(main())
    store.close()
    assert message_ids(db) == sorted(f"msg_{n}" for n in range(1, BOUND + 2))
    assert counts(db)["applied_seq"] == BOUND + 1


def test_a_commit_waiting_on_the_backlog_does_not_keep_close_from_ending(
        stuck: tuple[Store, BlockingApply, Path]) -> None:
    store, blocking, db = stuck

    async def main() -> None:
        last = await fill_the_backlog(store, blocking)
        closing = asyncio.ensure_future(asyncio.to_thread(store.close))
        await asyncio.sleep(0.2)
        blocking.release.set()  # the batch in hand ends; close applies the rest
        await asyncio.wait_for(closing, 10)
        await asyncio.wait_for(last, 10)

    asyncio.run(main())
    assert message_ids(db) == sorted(f"msg_{n}" for n in range(1, BOUND + 1))
    assert not journal_path(db).exists()


def test_a_batch_applied_in_the_background_drops_only_its_own_journal_lines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocking = BlockingApply(monkeypatch)
    db = tmp_path / "s.duckdb"
    store = Store(db, now=START, flush_records=10)
    try:
        async def main() -> None:
            await commit_all(store, range(1, 11))
            assert await asyncio.to_thread(blocking.entered.wait, 10)
            await commit_all(store, range(11, 15))
            blocking.release.set()
            for _ in range(500):  # the applier finishes on its own
                if seqs_in_file(journal_path(db))[0] == 11:
                    break
                await asyncio.sleep(0.01)

        asyncio.run(main())
        assert store.pending_records == 4
        assert seqs_in_file(journal_path(db)) == [11, 12, 13, 14]  # applied lines gone, later ones kept
    finally:
        blocking.release.set()
        store.close()
    assert message_ids(db) == sorted(f"msg_{n}" for n in range(1, 15))


def test_a_failed_background_apply_loses_nothing_and_a_later_flush_applies_everything_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    real = store_handle.apply_batch
    batches: list[int] = []

    def fails_once(con: duckdb.DuckDBPyConnection, payloads: list[str]) -> None:
        batches.append(len(payloads))
        if len(batches) == 1:
            raise duckdb.IOException("disk full")
        real(con, payloads)

    monkeypatch.setattr(store_handle, "apply_batch", fails_once)
    db = tmp_path / "s.duckdb"
    store = Store(db, now=START, flush_records=5)
    try:
        asyncio.run(commit_all(store, range(1, 6)))
        for _ in range(500):
            if batches:
                break
            threading.Event().wait(0.01)
        store.flush()  # waits for the failed attempt to finish, then applies the batch again
        assert store.pending_records == 0
    finally:
        store.close()
    assert batches == [5, 5]
    assert "will retry" in caplog.text
    assert message_ids(db) == sorted(f"msg_{n}" for n in range(1, 6))
    assert counts(db)["applied_seq"] == 5


def test_reads_that_need_no_pending_rows_do_not_wait_for_a_batch_being_applied(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "s.duckdb", now=START, flush_records=10)
    store.commit([SessionRow("ses_2", "tnt_1", "agt_1", None, "active", "{}", START, START)])
    store.flush()  # ses_2 is in DuckDB; ses_1's messages below will be pending
    blocking = BlockingApply(monkeypatch)
    try:
        async def main() -> None:
            await commit_all(store, range(1, 11))
            assert await asyncio.to_thread(blocking.entered.wait, 10)

        asyncio.run(main())
        answers: dict[str, object] = {}
        readers = [threading.Thread(target=lambda: answers.update(session=store.get_session("tnt_1", "ses_2"))),
                   threading.Thread(target=lambda: answers.update(key=store.idempotency_record("tnt_1", "k"))),
                   threading.Thread(target=lambda: answers.update(pending=store.messages("ses_1")))]
        for reader in readers:
            reader.start()
        for reader in readers[:2]:
            reader.join(5)
            assert not reader.is_alive()  # answered from the committed state while DuckDB is busy
        assert answers["session"].id == "ses_2" and answers["key"] is None  # type: ignore[union-attr]
        readers[2].join(0.3)
        assert readers[2].is_alive()  # ses_1 has rows in the batch: this read waits for it...
        blocking.release.set()
        readers[2].join(10)
        assert [row[0] for row in answers["pending"]] == [f"msg_{n}" for n in range(1, 11)]  # ...and sees them all
    finally:
        blocking.release.set()
        store.close()


# --------------------------------------------------------------------------- commits on virtual time


def test_on_virtual_time_a_store_without_a_journal_takes_a_commit_at_once() -> None:
    """No fsync to share: the record is pending as soon as commit_async returns, and no virtual time passes."""
    clock = VirtualClock(start=START, commit_window_s=0.05)
    store = Store(":memory:", now=START, flush_records=2, commit_window_s=clock.commit_window_s)
    try:
        async def main() -> list[tuple[float, int]]:
            seen = []
            for n in (1, 2, 3):
                await store.commit_async(rows(n))
                seen.append((clock.monotonic(), store.pending_records))
            return seen

        assert clock.run(main()) == [(0.0, 1), (0.0, 0), (0.0, 1)]  # the second commit filled a batch of two
        assert sorted(store.query("SELECT id FROM messages").id) == ["msg_1", "msg_2", "msg_3"]  # reads see all
    finally:
        store.close()


def test_on_virtual_time_a_store_with_a_journal_groups_concurrent_commits_in_one_window(tmp_path: Path) -> None:
    clock = VirtualClock(start=START, commit_window_s=0.05)
    db = tmp_path / "v.duckdb"
    store = Store(db, now=START, commit_window_s=clock.commit_window_s)
    try:
        async def main() -> float:
            await asyncio.gather(*(store.commit_async(rows(n)) for n in (1, 2, 3)))
            return clock.monotonic()

        assert clock.run(main()) == pytest.approx(0.05)  # they waited for the window, once, together
        assert seqs_in_file(journal_path(db)) == [1, 2, 3]
        assert store.pending_records == 3
    finally:
        store.close()


def test_on_virtual_time_a_record_that_cannot_be_committed_is_an_internal_error_and_leaves_nothing() -> None:
    clock = VirtualClock(start=START)
    store = Store(":memory:", now=START, commit_window_s=clock.commit_window_s)
    try:
        with pytest.raises(InternalError):
            clock.run(store.commit_async([("not", "a", "row")]))  # type: ignore[list-item]
        assert store.pending_records == 0
    finally:
        store.close()

"""The store's parts, each on its own: the pending index, the group commit, the DuckDB handle.

``Store`` only puts these together; here each is driven directly (the group
commit by the functions it is given to write with, the handle on a real
DuckDB file), so a change to one is tested without the others.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from vbgateway import VirtualClock
from vbgateway.errors import DatabaseError, InternalError
from vbgateway.store.group_commit import GroupCommit
from vbgateway.store.handle import DuckHandle
from vbgateway.store.keyfilter import key_hash
from vbgateway.store.pending import PendingIndex
from vbgateway.store.records import PlainRecord, payload_of, plain_record
from vbgateway.store.tables import IdempotencyRow, MessageRow

START = datetime(2026, 1, 1, tzinfo=UTC)


def entry(seq: int, session: str, key: str | None = None) -> tuple:
    idempotency = ((("tnt_1", key), (f"hash-{seq}", f"reply-{seq}")),) if key else ()
    return (seq, f'{{"seq": {seq}}}', (session,), idempotency)


# --------------------------------------------------------------------------- PendingIndex


def test_the_pending_index_keeps_a_batch_visible_until_duckdb_has_it() -> None:
    index = PendingIndex()
    index.load_stored_keys(np.array([key_hash("tnt_1", "old")], dtype=np.int64))
    index.add([entry(1, "ses_a", "k1"), entry(2, "ses_b")])
    assert len(index) == 2 and index.has_session("ses_a") and index.has_session("ses_b")
    assert index.lookup("tnt_1", "k1") == (("hash-1", "reply-1"), True)

    batch = index.take()
    index.add([entry(3, "ses_c", "k3")])  # committed while the batch is being applied
    assert len(index) == 3 and index.has_session("ses_a")  # still visible: DuckDB has not committed it
    index.applied(batch)
    assert len(index) == 1 and not index.has_session("ses_a") and index.has_session("ses_c")
    assert index.lookup("tnt_1", "k1") == (None, True)  # now in DuckDB: the filter says "maybe"
    assert index.lookup("tnt_1", "new") == (None, False)  # certainly not stored: no query needed
    assert index.lookup("tnt_1", "old") == (None, True)


def test_a_batch_duckdb_refused_goes_back_in_front_in_sequence_order() -> None:
    index = PendingIndex()
    index.add([entry(1, "ses_a"), entry(2, "ses_a")])
    batch = index.take()
    index.add([entry(3, "ses_b")])
    index.failed(batch)
    assert [seq for seq, *_ in index.take()] == [1, 2, 3]


# --------------------------------------------------------------------------- GroupCommit


def record(n: int, key: str | None = None) -> PlainRecord:
    rows: list = [MessageRow(f"msg_{n}", "tnt_1", "ses_1", n, "user", "hi", "chat", f"req_{n}", START)]
    if key:
        rows.append(IdempotencyRow("tnt_1", key, "hash", f"msg_{n}", "{}", START))
    return plain_record(rows)


def test_on_virtual_time_concurrent_commits_are_written_once_after_the_window() -> None:
    clock = VirtualClock(start=START)
    groups: list[tuple[float, list[str]]] = []

    def write(records: list[PlainRecord]) -> None:
        groups.append((clock.monotonic(), [r.record["messages"][0][0] for r in records]))

    commits = GroupCommit(write, write, window_s=0.25, fsync=True)

    async def main() -> None:
        async def one(n: int) -> None:
            await clock.sleep(0.01 * n)
            durable = commits.submit(record(n))
            assert durable is not None
            await durable
            assert groups and f"msg_{n}" in groups[-1][1]  # returns only once its own record is written

        await asyncio.gather(*(one(n) for n in (1, 2, 3)))
        await one(40)  # after the window: a group of its own

    clock.run(main())
    # the first group at 0.01 + 0.25; msg_40 sleeps 0.4 after it, and waits its own window
    assert groups == [(pytest.approx(0.26), ["msg_1", "msg_2", "msg_3"]), (pytest.approx(0.91), ["msg_40"])]


def test_with_no_fsync_to_share_a_record_is_written_at_once_without_a_future() -> None:
    written: list[PlainRecord] = []
    commits = GroupCommit(written.extend, written.extend, window_s=0.25, fsync=False)
    assert commits.submit(record(1)) is None and len(written) == 1


def test_a_group_that_cannot_be_written_fails_every_caller_in_it_with_an_internal_error() -> None:
    clock = VirtualClock(start=START)

    def broken(records: list[PlainRecord]) -> None:
        raise OSError("disk full")

    commits = GroupCommit(broken, broken, window_s=0.01, fsync=True)

    async def main() -> list[BaseException | None]:
        return await asyncio.gather(*(commits.submit(record(n)) for n in (1, 2)), return_exceptions=True)  # type: ignore[arg-type]

    errors = clock.run(main())
    assert all(isinstance(e, InternalError) and isinstance(e.__cause__, OSError) for e in errors)
    with pytest.raises(InternalError):
        GroupCommit(broken, broken, window_s=0.01, fsync=False).submit(record(3))


def test_on_real_time_a_journal_thread_writes_and_arrivals_meanwhile_form_the_next_group() -> None:
    first_started, release = threading.Event(), threading.Event()
    groups: list[tuple[str, int]] = []

    def write_in_thread(records: list[PlainRecord]) -> None:
        groups.append((threading.current_thread().name, len(records)))
        if len(groups) == 1:
            first_started.set()
            assert release.wait(10)

    commits = GroupCommit(lambda _: None, write_in_thread, window_s=None, fsync=True)

    async def main() -> None:
        first = asyncio.ensure_future(commits.submit(record(1)))  # type: ignore[arg-type]
        assert await asyncio.to_thread(first_started.wait, 10)
        later = [asyncio.ensure_future(commits.submit(record(n))) for n in (2, 3, 4)]  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert not first.done()  # not durable before its group is written
        release.set()
        await asyncio.gather(first, *later)

    asyncio.run(main())
    commits.close()
    assert [size for _, size in groups] == [1, 3]
    assert all(name.startswith("vbgateway-journal") for name, _ in groups)


# --------------------------------------------------------------------------- DuckHandle


@pytest.fixture
def duck(tmp_path: Path):
    handle = DuckHandle(tmp_path / "h.duckdb", wait_s=5)
    applied, opened = handle.open_writer(tmp_path / "h.duckdb", START, lend=False)
    assert (applied, opened) == (0, 1)
    handle.open_side()
    yield handle
    handle.close()


def test_reads_go_to_the_second_cursor_while_another_thread_holds_duckdb(duck: DuckHandle) -> None:
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with duck.lock:
            held.set()
            done.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        assert duck.fetchall("SELECT open_count FROM journal_state") == [(1,)]  # answered, not blocked
    finally:
        done.set()
        holder.join()


def test_a_transaction_inside_another_joins_it_and_a_failure_undoes_both(duck: DuckHandle) -> None:
    insert = "INSERT INTO tenants VALUES (?, ?, ?)"
    with pytest.raises(DatabaseError), duck.transaction():
        duck.execute_all([(insert, ["tnt_1", "One", START])], "insert one")
        with duck.transaction():
            duck.execute_all([(insert, ["tnt_2", "Two", START])], "insert two")
        duck.execute_all([("INSERT INTO no_such_table VALUES (1)", [])], "insert three")
    assert duck.fetchall("SELECT count(*) FROM tenants") == [(0,)]


def test_instants_land_exactly_from_utc_text_other_zones_and_older_lines_of_microseconds(duck: DuckHandle) -> None:
    """A UTC instant is journaled as RFC 3339 text, any other as microseconds, older lines held microseconds:
    DuckDB stores the same instant from each, whatever its session's TimeZone."""
    moments = [datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
               datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=2))), datetime(2026, 1, 1, tzinfo=UTC)]
    records = [plain_record([MessageRow(f"msg_{i}", "tnt_1", "ses_1", i, "user", "hi", "chat", "req_1", moment)])
               for i, moment in enumerate(moments[:3])]
    assert '"2026-03-29T00:59:59.999999+00:00"' in payload_of(records[0].record)
    assert isinstance(records[2].record["messages"][0][8], int)  # +02:00: microseconds
    older = {"messages": [["msg_3", "tnt_1", "ses_1", 3, "user", "hi", "chat", "req_1", 1767225600000000]]}
    duck.execute_all([("SET TimeZone = 'America/Los_Angeles'", [])], "set a zone")
    duck.write_batch([*(payload_of(r.record) for r in records), payload_of(older)], 4)
    stored = duck.fetchall("SELECT epoch_us(created_at) FROM messages ORDER BY position")
    assert [us for (us,) in stored] == [(m - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
                                        for m in moments]


def test_a_naive_instant_or_a_value_that_is_no_instant_is_refused_before_anything_is_written() -> None:
    for bad in (datetime(2026, 1, 1), "2026-01-01T00:00:00+00:00"):
        with pytest.raises(TypeError):
            plain_record([MessageRow("msg_1", "tnt_1", "ses_1", 0, "user", "hi", "chat", "req_1", bad)])


def test_a_batch_and_the_journal_position_it_covers_land_in_one_transaction(duck: DuckHandle) -> None:
    good = plain_record([MessageRow("msg_1", "tnt_1", "ses_1", 0, "user", "hi", "chat", "req_1", START)])
    duck.write_batch([payload_of(good.record)], 7)
    with pytest.raises(DatabaseError) as info:
        duck.write_batch([payload_of(good.record), '{"messages": [["msg_2"]]}'], 9)  # NOT NULL columns missing
    assert info.value.code == "DATABASE_ERROR"
    assert duck.fetchall("SELECT count(*) FROM messages") == [(1,)]
    assert duck.fetchall("SELECT applied_seq FROM journal_state") == [(7,)]

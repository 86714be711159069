"""Store operations beyond single replies: transactions, copying rows, merging databases, errors of our family.

Every test runs on real DuckDB files; a failure must leave nothing behind and
reach the caller as a ``GatewayError`` with its code, never as a DuckDB exception.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from vbgateway.errors import DatabaseError, GatewayError, RowsRejectedError, ValidationError
from vbgateway.models import ApiKeyInfo, Tenant
from vbgateway.store import Store
from vbgateway.store.tables import MessageRow, SessionRow, TenantRow

START = datetime(2026, 1, 1, tzinfo=UTC)


def tenant(n: int) -> tuple[Tenant, ApiKeyInfo]:
    return (Tenant(id=f"tnt_{n}", name=f"Tenant {n}", created_at=START),
            ApiKeyInfo(id=f"key_{n}", tenant_id=f"tnt_{n}", prefix="vb_live_x", created_at=START))


def reply_rows(n: int, session: str = "ses_1") -> list:
    at = START + timedelta(seconds=n)
    return [MessageRow(f"msg_{n}", "tnt_1", session, n, "user", f"hello {n}", "chat", f"req_{n}", at)]


def count(store: Store, table: str) -> int:
    return store.query_rows(f"SELECT count(*) FROM {table}")[0][0]


@pytest.fixture
def store(tmp_path: Path):
    opened = Store(tmp_path / "s.duckdb", now=START)
    yield opened
    opened.close()


def test_writes_in_one_transaction_land_together_or_not_at_all(store: Store) -> None:
    with store.transaction():
        store.insert_tenant(*tenant(1), key_hash="h1")
        store.insert_tenant(*tenant(2), key_hash="h2")
    assert count(store, "tenants") == 2

    with pytest.raises(RowsRejectedError) as info, store.transaction():
        store.insert_tenant(*tenant(3), key_hash="h3")
        store.insert_tenant(*tenant(1), key_hash="h4")  # tnt_1 exists: the primary key refuses it
    assert info.value.code == "ROWS_REJECTED" and isinstance(info.value.__cause__, duckdb.ConstraintException)
    assert [t.id for t in store.list_tenants()] == ["tnt_1", "tnt_2"]  # tnt_3 was rolled back with it
    store.insert_tenant(*tenant(3), key_hash="h3")  # and the store is usable after
    assert count(store, "tenants") == 3


def test_a_failure_of_the_callers_own_code_rolls_the_transaction_back(store: Store) -> None:
    with pytest.raises(ZeroDivisionError), store.transaction():
        store.insert_tenant(*tenant(1), key_hash="h1")
        raise ZeroDivisionError
    assert count(store, "tenants") == 0


def test_replies_committed_during_a_transaction_are_durable_and_applied_after_it(store: Store) -> None:
    store.flush_records = 1  # every commit would apply at once outside a transaction
    with store.transaction():
        store.insert_tenant(*tenant(1), key_hash="h1")
        store.commit(reply_rows(1))
        assert store.pending_records == 1  # journaled, waiting for the transaction
    store.flush()
    assert [m.id for m in store.messages("ses_1")] == ["msg_1"]
    assert count(store, "tenants") == 1


def test_table_rows_and_insert_rows_copy_the_control_tables_between_databases(tmp_path: Path, store: Store) -> None:
    store.insert_tenant(*tenant(1), key_hash="h1")
    rows = store.table_rows(["tenants", "api_keys"])
    assert rows["tenants"] == [tuple(TenantRow("tnt_1", "Tenant 1", START))]
    copy = Store(tmp_path / "copy.duckdb", now=START)
    try:
        copy.insert_rows(rows)
        assert copy.table_rows(["tenants", "api_keys"]) == rows
        with pytest.raises(RowsRejectedError):  # all or none: the key is a duplicate, so the tenant is not kept
            copy.insert_rows({"tenants": [("tnt_2", "Tenant 2", START)], "api_keys": rows["api_keys"]})
        assert [t.id for t in copy.list_tenants()] == ["tnt_1"]
    finally:
        copy.close()


def test_rows_are_copied_only_for_tables_that_may_be_written_directly(store: Store) -> None:
    for name in ("journal_state", "schema_migrations", "idempotency_records", "no_such_table"):
        with pytest.raises(ValidationError):
            store.insert_rows({name: [(1, 2, 3)]})
        with pytest.raises(ValidationError):
            store.table_rows([name])
    assert store.query_rows("SELECT applied_seq, open_count FROM journal_state") == [(0, 1)]


def _instance(path: Path | str, sessions: list[str]) -> Store:
    """A gateway instance's database with one reply per session, applied."""
    instance = Store(path, now=START, journal=False)
    for n, session in enumerate(sessions):
        instance.commit([SessionRow(session, "tnt_1", "agt_1", None, "active", "{}", START, START),
                         *reply_rows(n, session)])
    instance.flush()
    return instance


def test_merging_appends_files_and_open_stores_in_one_transaction(tmp_path: Path, store: Store) -> None:
    _instance(tmp_path / "a.duckdb", ["ses_a1", "ses_a2"]).close()
    memory = _instance(":memory:", ["ses_m1"])
    before = store.query_rows("SELECT current_setting('preserve_insertion_order'), current_setting('max_vacuum_tasks')")
    try:
        with store.merging() as merge:
            merge.add_file(tmp_path / "a.duckdb")
            merge.add_store(memory)
    finally:
        memory.close()
    assert sorted(r[0] for r in store.query_rows("SELECT id FROM sessions")) == ["ses_a1", "ses_a2", "ses_m1"]
    assert count(store, "messages") == 3
    assert store.query_rows("SELECT current_setting('preserve_insertion_order'), "
                            "current_setting('max_vacuum_tasks')") == before


def test_a_merge_that_fails_leaves_none_of_the_merged_rows(tmp_path: Path, store: Store) -> None:
    _instance(tmp_path / "a.duckdb", ["ses_a1"]).close()
    (tmp_path / "broken.duckdb").write_bytes(b"not a database")
    with pytest.raises(DatabaseError) as info, store.merging() as merge:
        merge.add_file(tmp_path / "a.duckdb")
        merge.add_file(tmp_path / "broken.duckdb")
    assert isinstance(info.value.__cause__, duckdb.Error) and str(tmp_path / "broken.duckdb") in str(info.value)
    assert count(store, "sessions") == 0
    with store.merging() as merge:  # usable again
        merge.add_file(tmp_path / "a.duckdb")
    assert count(store, "sessions") == 1


def test_a_store_on_a_connection_its_owner_closed_fails_with_a_database_error(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "owned.duckdb"))
    store = Store(con, now=START)
    store.commit(reply_rows(1))
    con.close()  # the caller's connection, gone under the store
    for operation in (store.flush, lambda: store.get_tenant("tnt_1"), lambda: store.query_rows("SELECT 1"),
                      lambda: store.insert_tenant(*tenant(1), key_hash="h1")):
        with pytest.raises(GatewayError) as info:
            operation()
        assert info.value.code in {"DATABASE_ERROR", "VALIDATION_ERROR"}
        assert not isinstance(info.value, duckdb.Error)
    with pytest.raises(DatabaseError):
        store.close()  # the pending reply cannot be applied: said so, not swallowed


def test_a_database_the_store_cannot_create_is_a_database_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(DatabaseError) as info:
        Store(tmp_path / "file" / "db.duckdb", now=START, journal=False)
    assert info.value.code == "DATABASE_ERROR"

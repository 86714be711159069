"""The DuckDB schema: exactly the documented tables, migrated once, in step with the journal's columns."""

from __future__ import annotations

from datetime import datetime, timezone

import subprocess
import sys

import duckdb
import pytest

from vbgateway import Gateway, VirtualClock
from vbgateway.store.batch import JOURNALED_COLUMNS
from vbgateway.store.schema import MIGRATIONS

TABLES = {"tenants", "api_keys", "agents", "sessions", "messages", "provider_call_events", "usage_events",
          "idempotency_records", "schema_migrations", "journal_state"}


def columns(gw, table: str) -> list[str]:
    frame = gw.sql("SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' AND table_name = ?"
                   " ORDER BY ordinal_position", [table])
    return list(frame["column_name"])


def test_a_fresh_database_has_exactly_the_documented_tables(gw):
    frame = gw.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'")
    assert set(frame["table_name"]) == TABLES
    assert len(frame) == len(TABLES)


def test_usage_events_has_a_channel_column(gw):
    assert "channel" in columns(gw, "usage_events")


def test_schema_migrations_records_version_1(gw, clock):
    frame = gw.sql("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
    assert list(frame["version"]) == [m.version for m in MIGRATIONS]
    assert frame["version"][0] == 1 and frame["name"][0] == MIGRATIONS[0].name
    assert frame["applied_at"][0].to_pydatetime() == clock.now()


def test_reopening_a_database_applies_no_migration_twice(gw, db_path):
    gw.close()
    for hours in (1, 2):
        later = VirtualClock(start=datetime(2026, 1, 1, hours, tzinfo=timezone.utc))
        with Gateway.open(db_path, clock=later) as again:
            frame = again.sql("SELECT version, applied_at FROM schema_migrations")
            assert list(frame["version"]) == [m.version for m in MIGRATIONS]
            assert frame["applied_at"][0].to_pydatetime() == datetime(2026, 1, 1, tzinfo=timezone.utc)
            assert again.sql("SELECT count(*) AS n FROM journal_state")["n"][0] == 1


@pytest.mark.parametrize("table", sorted(JOURNALED_COLUMNS))
def test_journaled_columns_match_the_live_table(gw, table):
    assert columns(gw, table) == [name for name, _ in JOURNALED_COLUMNS[table]]


def test_every_journaled_table_exists(gw):
    assert set(JOURNALED_COLUMNS) <= TABLES


def test_a_database_newer_than_the_code_is_refused(gw, db_path, clock):
    gw.close()
    newer = MIGRATIONS[-1].version + 1
    con = duckdb.connect(str(db_path))
    con.execute("INSERT INTO schema_migrations VALUES (?, 'from_the_future', now())", [newer])
    con.close()
    with pytest.raises(Exception, match="newer") as info:
        Gateway.open(db_path, clock=clock)
    assert str(newer) in str(info.value)


def test_a_refused_newer_database_is_left_untouched(gw, db_path, clock):
    gw.close()
    con = duckdb.connect(str(db_path))
    con.execute("INSERT INTO schema_migrations VALUES (99, 'from_the_future', now())")
    con.close()
    with pytest.raises(Exception):
        Gateway.open(db_path, clock=clock)
    con = duckdb.connect(str(db_path))
    try:
        assert [r[0] for r in con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()] == [1, 99]
    finally:
        con.close()


def test_a_refused_newer_database_is_released_at_once(gw, db_path, clock):
    gw.close()
    con = duckdb.connect(str(db_path))
    con.execute("INSERT INTO schema_migrations VALUES (99, 'from_the_future', now())")
    con.close()
    with pytest.raises(Exception) as info:
        Gateway.open(db_path, clock=clock)
    # While the caller still holds the error, another process can open the file: no lock is leaked.
    probe = subprocess.run([sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1]).close()",
                            str(db_path)], capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr[-500:]
    assert info.value is not None

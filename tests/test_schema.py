"""The DuckDB schema: exactly the documented tables, migrated once, derived from one definition per table."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Annotated, NamedTuple

import duckdb
import pytest

from vbgateway import Gateway, VirtualClock
from vbgateway.errors import DatabaseError
from vbgateway.store import tables as definitions
from vbgateway.store.batch import JOURNALED_COLUMNS
from vbgateway.store.schema import MIGRATIONS
from vbgateway.store.tables import Since, Sql, Stamp, Table, Text

# Migration 1 exactly as databases made before the tables were defined in one place were created.
# They must open, and a fresh database must get the very same tables.
FROZEN_MIGRATION_1 = """
    CREATE TABLE tenants (id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE api_keys (id VARCHAR PRIMARY KEY, tenant_id VARCHAR NOT NULL, key_hash VARCHAR NOT NULL UNIQUE,
        key_prefix VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL, revoked_at TIMESTAMPTZ);
    CREATE TABLE agents (id VARCHAR PRIMARY KEY, tenant_id VARCHAR NOT NULL, name VARCHAR NOT NULL,
        primary_provider VARCHAR NOT NULL, fallback_provider VARCHAR, system_prompt VARCHAR NOT NULL,
        enabled_tools VARCHAR[] NOT NULL, created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE sessions (id VARCHAR NOT NULL, tenant_id VARCHAR NOT NULL, agent_id VARCHAR NOT NULL,
        customer_id VARCHAR, status VARCHAR NOT NULL, metadata JSON NOT NULL, created_at TIMESTAMPTZ NOT NULL,
        last_activity_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE messages (id VARCHAR NOT NULL, tenant_id VARCHAR NOT NULL, session_id VARCHAR NOT NULL,
        position INTEGER NOT NULL, role VARCHAR NOT NULL, content VARCHAR NOT NULL, channel VARCHAR NOT NULL,
        request_id VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE provider_call_events (id VARCHAR NOT NULL, tenant_id VARCHAR NOT NULL, session_id VARCHAR NOT NULL,
        agent_id VARCHAR NOT NULL, request_id VARCHAR NOT NULL, provider VARCHAR NOT NULL, status VARCHAR NOT NULL,
        http_status INTEGER, latency_ms INTEGER NOT NULL, retries INTEGER NOT NULL, error_code VARCHAR,
        created_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE usage_events (id VARCHAR NOT NULL, tenant_id VARCHAR NOT NULL, session_id VARCHAR NOT NULL,
        agent_id VARCHAR NOT NULL, message_id VARCHAR NOT NULL, request_id VARCHAR NOT NULL,
        provider VARCHAR NOT NULL, channel VARCHAR NOT NULL, tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL,
        usd_per_1k_tokens DECIMAL(18, 7) NOT NULL, cost_usd DECIMAL(24, 10) NOT NULL,
        created_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE idempotency_records (tenant_id VARCHAR NOT NULL, key VARCHAR NOT NULL,
        request_hash VARCHAR NOT NULL, message_id VARCHAR NOT NULL, response JSON NOT NULL,
        created_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (tenant_id, key));
    CREATE TABLE journal_state (id INTEGER PRIMARY KEY, applied_seq BIGINT NOT NULL, open_count BIGINT NOT NULL);
    INSERT INTO journal_state VALUES (1, 0, 0);
    CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL);
    INSERT INTO schema_migrations VALUES (1, 'create_core_tables', '2025-06-01 00:00:00+00');
"""

TABLES = {"tenants", "api_keys", "agents", "sessions", "messages", "provider_call_events", "usage_events",
          "idempotency_records", "schema_migrations", "journal_state", "budgets", "budget_alerts", "rate_limits",
          "request_refusals", "breaker_transitions", "daily_usage", "daily_messages", "daily_sessions", "session_days",
          "providers", "price_versions"}


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
        later = VirtualClock(start=datetime(2026, 1, 1, hours, tzinfo=UTC))
        with Gateway.open(db_path, clock=later) as again:
            frame = again.sql("SELECT version, applied_at FROM schema_migrations")
            assert list(frame["version"]) == [m.version for m in MIGRATIONS]
            assert frame["applied_at"][0].to_pydatetime() == datetime(2026, 1, 1, tzinfo=UTC)
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
    with pytest.raises(DatabaseError, match="newer") as info:
        Gateway.open(db_path, clock=clock)
    assert str(newer) in str(info.value) and info.value.code == "DATABASE_TOO_NEW"


def test_a_refused_newer_database_is_left_untouched(gw, db_path, clock):
    gw.close()
    con = duckdb.connect(str(db_path))
    con.execute("INSERT INTO schema_migrations VALUES (99, 'from_the_future', now())")
    con.close()
    with pytest.raises(Exception):
        Gateway.open(db_path, clock=clock)
    con = duckdb.connect(str(db_path))
    try:
        versions = [r[0] for r in con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()]
        assert versions == [*(m.version for m in MIGRATIONS), 99]
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


def catalog(con: duckdb.DuckDBPyConnection) -> tuple[list[tuple], set[tuple]]:
    """Every column (name, position, type, nullability) and every constraint of migration 1's tables."""
    first = [t.name for t in definitions.TABLES if t.since == 1] + ["schema_migrations"]
    columns = con.execute("""SELECT table_name, column_name, column_index, data_type, is_nullable, column_default
                             FROM duckdb_columns() WHERE schema_name = 'main' AND list_contains(?, table_name)
                             ORDER BY ALL""", [first]).fetchall()
    constraints = con.execute("""SELECT table_name, constraint_type, constraint_text, constraint_column_names
                                 FROM duckdb_constraints() WHERE schema_name = 'main'
                                 AND list_contains(?, table_name)""", [first]).fetchall()
    return columns, {(t, kind, text, tuple(names)) for t, kind, text, names in constraints}


def test_a_database_made_before_the_tables_were_defined_in_one_place_opens_with_the_same_tables(tmp_path, clock):
    old = tmp_path / "old.duckdb"
    con = duckdb.connect(str(old))
    con.execute(FROZEN_MIGRATION_1)
    con.execute("INSERT INTO tenants VALUES ('tnt_old', 'Old Corp', '2025-06-01 00:00:00+00')")
    before = catalog(con)
    con.close()

    with Gateway.open(old, clock=clock) as gw:
        assert [t.name for t in gw.list_tenants()] == ["Old Corp"]
        tenant, _ = gw.create_tenant("New Corp")  # written with the derived INSERT into the old table
        assert gw.get_tenant(tenant.id).name == "New Corp"
    with Gateway.open(tmp_path / "fresh.duckdb", clock=clock):
        pass
    # Later migrations add tables of their own; migration 1's tables stay exactly as they were.
    with duckdb.connect(str(old), read_only=True) as con:
        migrated = catalog(con)
    with duckdb.connect(str(tmp_path / "fresh.duckdb"), read_only=True) as con:
        assert catalog(con) == migrated  # the old database, migrated, has exactly the tables of a fresh one
    with duckdb.connect(":memory:") as con:
        con.execute(definitions.SCHEMA_MIGRATIONS.create_sql(1))
        con.execute(MIGRATIONS[0].sql)
        assert catalog(con) == before  # the derived migration 1 creates exactly the tables it always did


def test_a_column_added_by_a_later_migration_is_one_annotated_field():
    class Widget(NamedTuple):
        id: Text
        created_at: Stamp
        colour: Annotated[str | None, Sql("VARCHAR"), Since(2)] = None

    widgets = Table("widgets", Widget, primary_key=("id",))
    assert "colour" not in widgets.create_sql(1) and "colour VARCHAR" in widgets.create_sql(2)
    assert widgets.add_columns_sql(2) == "ALTER TABLE widgets ADD COLUMN colour VARCHAR;"
    assert widgets.add_columns_sql(1) == ""
    con = duckdb.connect(":memory:")
    con.execute(widgets.create_sql(1))
    con.execute(widgets.add_columns_sql(2))
    con.execute(widgets.insert_sql(), Widget("w1", datetime(2026, 1, 1, tzinfo=UTC), "blue"))
    assert con.execute("SELECT id, colour FROM widgets").fetchall() == [("w1", "blue")]


def test_a_column_added_later_must_be_nullable_and_go_last():
    class Required(NamedTuple):
        id: Text
        size: Annotated[int, Sql("INTEGER"), Since(2)]

    class Misplaced(NamedTuple):
        id: Text
        colour: Annotated[str | None, Sql("VARCHAR"), Since(2)]
        created_at: Stamp

    with pytest.raises(TypeError, match="nullable"):
        Table("required", Required)
    with pytest.raises(TypeError, match="at the end"):
        Table("misplaced", Misplaced)


def test_every_table_has_one_definition_and_the_live_schema_follows_it(gw):
    for table in (*definitions.TABLES, definitions.SCHEMA_MIGRATIONS):
        assert columns(gw, table.name) == list(table.column_names)
    assert {t.name for t in definitions.TABLES} | {"schema_migrations"} == TABLES


def test_a_duckdb_file_with_a_foreign_table_of_the_same_name_is_a_database_error(tmp_path, clock):
    path = tmp_path / "foreign.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE tenants (something_else INTEGER)")
    with pytest.raises(DatabaseError) as info:
        Gateway.open(path, clock=clock)
    assert info.value.code == "DATABASE_ERROR" and isinstance(info.value.__cause__, duckdb.Error)


def test_a_database_made_before_a_lower_numbered_migration_was_merged_gains_it(tmp_path, clock):
    """Budgets (2) were merged after key scopes and breakers (3, 4): a database at 1, 3, 4 gets 2 too."""
    path = tmp_path / "between.duckdb"
    with Gateway.open(path, clock=clock) as gw:
        tenant, key = gw.create_tenant("Between Corp")
        gw.connect(key).create_agent(name="Support", primary_provider="vendorA", system_prompt="Hi.")
    with duckdb.connect(str(path)) as con:  # as the code before the merge left it: no trace of migration 2
        for table in definitions.TABLES:
            if table.since == 2:
                con.execute(f"DROP TABLE {table.name}")
            for column in table.columns:
                if column.since == 2 and table.since < 2:
                    con.execute(f"ALTER TABLE {table.name} DROP COLUMN {column.name}")
        con.execute("DELETE FROM schema_migrations WHERE version = 2")
    with Gateway.open(path, clock=clock) as gw:
        versions = gw.sql("SELECT version FROM schema_migrations ORDER BY version")["version"]
        assert list(versions) == [m.version for m in MIGRATIONS]
        [agent] = gw.as_tenant(tenant.id).list_agents()
        assert agent.max_output_tokens == 1024  # NULL in the added column: the default
        assert gw.set_budget(tenant.id, 5) is not None
    with Gateway.open(tmp_path / "fresh.duckdb", clock=clock):
        pass
    with duckdb.connect(str(path), read_only=True) as con:
        migrated = catalog(con)
    with duckdb.connect(str(tmp_path / "fresh.duckdb"), read_only=True) as con:
        assert catalog(con) == migrated  # the same tables, columns in the same order, the same keys

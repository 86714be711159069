"""The DuckDB schema, as named, ordered migrations recorded in a table.

The schema is a public interface: analysts query these tables directly
(README, "Database schema"). A change is a new migration appended to
``MIGRATIONS``; an applied migration is never edited.

High-volume tables (messages, provider_call_events, usage_events, sessions)
carry no primary-key index: ids are generated unique, exactly-once is
enforced by the journal (see ``journal.py``), and an ART index over tens of
millions of rows would cost memory and insert speed for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

__all__ = ["MIGRATIONS", "Migration", "migrate", "schema_version"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create_core_tables", """
        CREATE TABLE tenants (
            id          VARCHAR PRIMARY KEY,
            name        VARCHAR NOT NULL,
            created_at  TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE api_keys (
            id          VARCHAR PRIMARY KEY,
            tenant_id   VARCHAR NOT NULL,
            key_hash    VARCHAR NOT NULL UNIQUE,
            key_prefix  VARCHAR NOT NULL,
            created_at  TIMESTAMPTZ NOT NULL,
            revoked_at  TIMESTAMPTZ
        );
        CREATE TABLE agents (
            id                 VARCHAR PRIMARY KEY,
            tenant_id          VARCHAR NOT NULL,
            name               VARCHAR NOT NULL,
            primary_provider   VARCHAR NOT NULL,
            fallback_provider  VARCHAR,
            system_prompt      VARCHAR NOT NULL,
            enabled_tools      VARCHAR[] NOT NULL,
            created_at         TIMESTAMPTZ NOT NULL,
            updated_at         TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE sessions (
            id                VARCHAR NOT NULL,
            tenant_id         VARCHAR NOT NULL,
            agent_id          VARCHAR NOT NULL,
            customer_id       VARCHAR,
            status            VARCHAR NOT NULL,
            metadata          JSON NOT NULL,
            created_at        TIMESTAMPTZ NOT NULL,
            last_activity_at  TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE messages (
            id          VARCHAR NOT NULL,
            tenant_id   VARCHAR NOT NULL,
            session_id  VARCHAR NOT NULL,
            position    INTEGER NOT NULL,
            role        VARCHAR NOT NULL,
            content     VARCHAR NOT NULL,
            channel     VARCHAR NOT NULL,
            request_id  VARCHAR NOT NULL,
            created_at  TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE provider_call_events (
            id           VARCHAR NOT NULL,
            tenant_id    VARCHAR NOT NULL,
            session_id   VARCHAR NOT NULL,
            agent_id     VARCHAR NOT NULL,
            request_id   VARCHAR NOT NULL,
            provider     VARCHAR NOT NULL,
            status       VARCHAR NOT NULL,
            http_status  INTEGER,
            latency_ms   INTEGER NOT NULL,
            retries      INTEGER NOT NULL,
            error_code   VARCHAR,
            created_at   TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE usage_events (
            id                 VARCHAR NOT NULL,
            tenant_id          VARCHAR NOT NULL,
            session_id         VARCHAR NOT NULL,
            agent_id           VARCHAR NOT NULL,
            message_id         VARCHAR NOT NULL,
            request_id         VARCHAR NOT NULL,
            provider           VARCHAR NOT NULL,
            channel            VARCHAR NOT NULL,
            tokens_in          INTEGER NOT NULL,
            tokens_out         INTEGER NOT NULL,
            usd_per_1k_tokens  DECIMAL(18, 7) NOT NULL,
            cost_usd           DECIMAL(24, 10) NOT NULL,
            created_at         TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE idempotency_records (
            tenant_id     VARCHAR NOT NULL,
            key           VARCHAR NOT NULL,
            request_hash  VARCHAR NOT NULL,
            message_id    VARCHAR NOT NULL,
            response      JSON NOT NULL,
            created_at    TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (tenant_id, key)
        );
        CREATE TABLE journal_state (
            id           INTEGER PRIMARY KEY,
            applied_seq  BIGINT NOT NULL,
            open_count   BIGINT NOT NULL
        );
        INSERT INTO journal_state VALUES (1, 0, 0);
    """),
)


def _ensure_migrations_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("""
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version     INTEGER PRIMARY KEY,
            name        VARCHAR NOT NULL,
            applied_at  TIMESTAMPTZ NOT NULL
        )
    """)


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    _ensure_migrations_table(con)
    row = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def migrate(con: duckdb.DuckDBPyConnection, applied_at: object) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction.

    ``applied_at`` comes from the gateway's clock. Returns the names applied.
    A database newer than this code is refused rather than guessed at.
    """
    current = schema_version(con)
    latest = MIGRATIONS[-1].version
    if current > latest:
        raise RuntimeError(f"database schema version {current} is newer than this vbgateway ({latest}); upgrade it")
    applied: list[str] = []
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(migration.sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [migration.version, migration.name, applied_at])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        applied.append(migration.name)
    return applied

"""The DuckDB schema, as named, ordered migrations recorded in a table.

The schema is a public interface: analysts query these tables directly
(README, "Database schema"). A change is a new migration appended to
``MIGRATIONS``; an applied migration is never edited. A migration's DDL is
derived from the table definitions (``tables.py``): the tables it creates,
with the columns they had at that version, and the columns it adds to
older tables; ``extra_sql`` holds what definitions cannot say (seed rows), and
``fill`` the data work a new table needs (derived rows, in parts).

Features are built in parallel and each is given its migration number in
advance, so one may be merged after a higher number was released (budgets,
2, after key scopes and breakers, 3 and 4). ``migrate`` therefore applies
every migration a database has not recorded, not only those above its
latest: a database made between those merges gains the missing one. Such a
late migration creates its own tables and adds columns to no table a later
migration also extends, so the columns still end in definition order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb

from ..errors import DatabaseTooNewError
from .aggregates import backfill
from .connection import transaction
from .tables import SCHEMA_MIGRATIONS, TABLES

__all__ = ["MIGRATIONS", "Migration", "migrate", "schema_version"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    extra_sql: str = ""
    fill: Callable[[duckdb.DuckDBPyConnection], None] | None = None  # data work after the DDL, same transaction

    @property
    def sql(self) -> str:
        """The statements of this migration, derived from the table definitions."""
        created = [t.create_sql(self.version) for t in TABLES if t.since == self.version]
        added = [t.add_columns_sql(self.version) for t in TABLES if t.since < self.version]
        return "\n".join(part for part in (*created, *added, self.extra_sql) if part)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create_core_tables", extra_sql="INSERT INTO journal_state VALUES (1, 0, 0);"),
    Migration(2, "budgets"),
    Migration(3, "key_scopes_and_rate_limits"),
    Migration(4, "breaker_transitions"),
    # Daily aggregates for dashboards (``aggregates.py``), filled from the rows already stored.
    Migration(5, "daily_usage", fill=backfill),
    Migration(6, "providers_and_price_versions"),
)


def _ensure_migrations_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(SCHEMA_MIGRATIONS.create_sql(1, if_not_exists=True))


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
        raise DatabaseTooNewError(f"database schema version {current} is newer than this vbgateway ({latest}); "
                                  "upgrade vbgateway", details={"schemaVersion": current, "supported": latest})
    recorded = {int(row[0]) for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied: list[str] = []
    for migration in MIGRATIONS:
        if migration.version in recorded:
            continue
        with transaction(con):
            con.execute(migration.sql)
            if migration.fill is not None:
                migration.fill(con)
            con.execute(SCHEMA_MIGRATIONS.insert_sql(), [migration.version, migration.name, applied_at])
        applied.append(migration.name)
    return applied

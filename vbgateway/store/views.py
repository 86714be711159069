"""A database whose data tables are views over files elsewhere (a lake of Parquet): the store builds it.

``lake.py`` knows where the files are and how to read them (a ``SELECT``
per table); what turns a freshly migrated in-memory database into a
read-only picture of them is a write, and the store owns every write:
tables replaced by views, control rows loaded once, and the daily
aggregates made from the rows the views show.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb

from . import aggregates
from .tables import MESSAGES, TENANTS, USAGE_EVENTS, Table

__all__ = ["tables_as_views"]


def tables_as_views(con: duckdb.DuckDBPyConnection, views: Mapping[Table, str | None],
                    control: Mapping[Table, str]) -> None:
    """Replace each table of ``views`` by a view over its ``SELECT`` (None: no rows), and load ``control``'s rows.

    ``control`` maps tables (tenants, agents) to a ``SELECT`` of their rows,
    which may repeat an id: the first row of each id is kept. Without
    tenants (an export carries no names) each tenant is known by its id.
    """
    for table, select in views.items():
        con.execute(f"DROP TABLE {table.name}")
        if select is None:
            select = "SELECT " + ", ".join(f"CAST(NULL AS {c.sql_type}) AS {c.name}" for c in table.columns)
            select += " WHERE false"
        con.execute(f"CREATE VIEW {table.name} AS {select}")
    for table, select in control.items():
        con.execute(f"INSERT INTO {table.name} SELECT DISTINCT ON (id) * FROM ({select}) ORDER BY id")
    if TENANTS not in control:
        con.execute("INSERT INTO tenants SELECT tenant_id, tenant_id, min(created_at) FROM usage_events "
                    "GROUP BY tenant_id ORDER BY tenant_id")
    # The daily aggregates the rollups, KPIs and series read are not in the files: made here from their rows.
    aggregates.add_usage(con, USAGE_EVENTS.name)
    aggregates.add_messages(con, MESSAGES.name)

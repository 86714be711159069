"""Daily aggregates, kept in the same transaction as the rows they sum, so the two can never disagree.

Dashboards ask the same few questions of ever more rows: what did a tenant
spend in these days, on which provider, by which agent, over how many
sessions. ``daily_usage`` and ``daily_messages`` hold the additive answers
per UTC day (replies, tokens, exact cost, messages); ``daily_sessions`` holds
session counts from which any range of days gives an exact *distinct* count
(see ``DailySessionsRow``), and ``session_days`` is the bookkeeping that keeps
those counts exact when a session is used again on a later (or an earlier) day.

Every path that writes usage events or messages calls ``add_usage`` and
``add_messages`` inside its own transaction: a batch of journal records
(``batch.py``), bulk inserts (``bulk.py``), simulation merges (``merge.py``);
migration 5 runs the same statements once over every row already stored.

Why ``gap_days`` and not a list of session ids: a range's distinct sessions
are then a sum over the range's rows, which grows with days and dimensions,
not with sessions or replies. Keeping it exact needs each touched session's
earlier days, read from ``session_days``; for a batch of live replies the
read is limited to days since the oldest of its sessions was created (DuckDB
skips older row groups by their min/max), bulk writes read all of it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import duckdb

from .tables import DAILY_MESSAGES, DAILY_SESSIONS, DAILY_USAGE, SESSION_DAYS, Table

__all__ = ["AGGREGATE_KEYS", "CHUNK_ROWS", "DIMENSIONS", "add_messages", "add_usage", "backfill", "day_of"]

_US_PER_DAY = 86_400_000_000
# Usage rows added at a time: as many as DuckDB's memory_limit holds at about 500 bytes a row (a
# simulation's 100 MB: 200,000), up to CHUNK_ROWS. Each part scans the source and session_days once more.
CHUNK_ROWS = 2_000_000
_BYTES_PER_ROW = 500
_MIN_PART_ROWS = 1_000
_SIZE_UNITS = {"bytes": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "PiB": 1 << 50}
# The dimensions of ``daily_sessions``: (name, the session_days column that gives its value).
DIMENSIONS: tuple[tuple[str, str], ...] = (("tenant", "''"), ("agent", "agent_id"), ("provider", "provider"),
                                           ("channel", "channel"))


def day_of(column: str) -> str:
    """SQL for the UTC day of a TIMESTAMPTZ column, by integer arithmetic (floored also before 1970).

    Integer division rather than a cast to DATE: calendar functions on
    TIMESTAMPTZ go through ICU per row and cost several times more.
    """
    us = f"epoch_us({column})"
    return f"(DATE '1970-01-01' + ({us} // {_US_PER_DAY} - ({us} % {_US_PER_DAY} < 0)::BIGINT)::INTEGER)"


def _usage_source(source: str) -> str:
    """The columns the aggregates read from a relation of usage_events rows, with their types made plain."""
    return (f"(SELECT tenant_id::VARCHAR AS tenant_id, session_id::VARCHAR AS session_id, "
            f"agent_id::VARCHAR AS agent_id, provider::VARCHAR AS provider, channel::VARCHAR AS channel, "
            f"usd_per_1k_tokens::DECIMAL(18, 7) AS usd_per_1k_tokens, tokens_in::INTEGER AS tokens_in, "
            f"tokens_out::INTEGER AS tokens_out, cost_usd::DECIMAL(24, 10) AS cost_usd, "
            f"{day_of('created_at::TIMESTAMPTZ')} AS day FROM {source})")


# The key of each aggregate table: a write adds its measures to the row of the same key, or adds the row.
AGGREGATE_KEYS: dict[str, tuple[str, ...]] = {
    DAILY_USAGE.name: ("tenant_id", "day", "agent_id", "provider", "channel", "usd_per_1k_tokens"),
    DAILY_MESSAGES.name: ("tenant_id", "day", "channel"),
    DAILY_SESSIONS.name: ("tenant_id", "day", "dimension", "value", "gap_days"),
}


def _merge(table: Table, delta: str) -> str:
    """Add the rows of query ``delta`` (one per key, the table's columns) to ``table``'s rows.

    One MERGE: a join on the key rather than an index, so DuckDB reads only
    the row groups whose min/max can hold ``delta``'s keys; new keys are
    inserted in (tenant, day) order, which keeps those min/max narrow.
    """
    keys = AGGREGATE_KEYS[table.name]
    measures = [c for c in table.column_names if c not in keys]
    same = " AND ".join(f"t.{k} = d.{k}" for k in keys)
    sets = ", ".join(f"{m} = t.{m} + d.{m}" for m in measures)
    return (f"MERGE INTO {table.name} t USING ({delta} ORDER BY tenant_id, day) d ON {same} "
            f"WHEN MATCHED THEN UPDATE SET {sets} "
            f"WHEN NOT MATCHED THEN INSERT ({', '.join(table.column_names)}) "
            f"VALUES ({', '.join('d.' + c for c in table.column_names)})")


def _daily_usage(source: str) -> str:
    return _merge(DAILY_USAGE, f"""
        SELECT tenant_id, day, agent_id, provider, channel, usd_per_1k_tokens, count(*)::BIGINT AS replies,
               sum(tokens_in)::BIGINT AS tokens_in, sum(tokens_out)::BIGINT AS tokens_out,
               sum(cost_usd)::DECIMAL(38, 10) AS cost_usd
        FROM {source} GROUP BY ALL""")


_SD = ", ".join(SESSION_DAYS.column_names)  # tenant_id, session_id, day, agent_id, provider, channel
# A row of ``used`` (u) that session_days (k) holds already: an anti-join, which unlike EXCEPT does not
# deduplicate both sides again (``used`` is distinct, session_days unique).
_SAME_DAY = " AND ".join(f"k.{c} IS NOT DISTINCT FROM u.{c}" for c in SESSION_DAYS.column_names)
_GROUPED = tuple(column for _, column in DIMENSIONS if column != "''")  # agent_id, provider, channel


def _used_days() -> str:
    """Each session's days of use per dimension value, from ``sides``: one grouping set per dimension,
    so the rows are deduplicated per set instead of in one UNION of all of them."""
    def grouping_id(column: str) -> int:  # grouping(...) of the set that holds ``column`` (bits: not grouped)
        return sum(1 << (len(_GROUPED) - 1 - i) for i, other in enumerate(_GROUPED) if other != column)

    which = f"grouping({', '.join(_GROUPED)})"
    sets = ", ".join("(side, tenant_id, session_id, day" + ("" if column == "''" else f", {column}") + ")"
                     for _, column in DIMENSIONS)
    dimension = " ".join(f"WHEN {grouping_id(column)} THEN '{name}'" for name, column in DIMENSIONS)
    value = " ".join(f"WHEN {grouping_id(column)} THEN {column}" for _, column in DIMENSIONS)
    return (f"SELECT side, tenant_id, session_id, day, CASE {which} {dimension} END AS dimension, "
            f"CASE {which} {value} END AS value FROM sides GROUP BY GROUPING SETS ({sets})")


_USED = _used_days()
# A session's contribution: one count per day of use per dimension value, with the days since its
# previous day of use there. New rows can change the gaps of a session's later days (a day filled in
# between), so the touched sessions' counts are recomputed whole: after minus before.
_DAILY_SESSIONS = _merge(DAILY_SESSIONS, f"""
    WITH sides AS (SELECT 0 AS side, * FROM _vb_agg_known UNION ALL SELECT 1 AS side, * FROM _vb_agg_known
                   UNION ALL SELECT 1 AS side, * FROM _vb_agg_fresh),
    used AS ({_USED}),
    spans AS (SELECT side, tenant_id, day, dimension, value,
                     coalesce(day - lag(day) OVER (PARTITION BY side, tenant_id, session_id, dimension, value
                                                   ORDER BY day), 0)::INTEGER AS gap_days
              FROM used)
    SELECT tenant_id, day, dimension, value, gap_days, sum(2 * side - 1)::BIGINT AS sessions
    FROM spans GROUP BY ALL HAVING sum(2 * side - 1) <> 0""")


def _usage_statements(source: str, since: str | None = None) -> list[str]:
    """The statements that add the usage rows of relation ``source`` to the aggregates.

    ``since``: SQL for a day no earlier than any day the source's sessions
    were used before (their creation), which limits the read of ``session_days``.
    The second statement keeps the session days not counted before and
    returns how many; when there are none (most batches of live replies:
    their sessions were used earlier that day), the rest has nothing to do.
    Only then are the touched sessions' earlier days read, to recompute
    their counts (before the new days are inserted). The caller drops
    ``_vb_agg_fresh``, which the second statement makes in either case.
    """
    bound = f"k.day >= {since} AND " if since is not None else ""
    rows = _usage_source(source)
    return [
        _daily_usage(rows),
        f"""CREATE TEMP TABLE _vb_agg_fresh AS
            WITH used AS (SELECT DISTINCT {_SD} FROM {rows}),
            known AS (SELECT {_SD} FROM session_days k WHERE {bound}k.session_id IN (SELECT session_id FROM used))
            SELECT * FROM used u WHERE NOT EXISTS (SELECT 1 FROM known k WHERE {_SAME_DAY})""",
        f"""CREATE TEMP TABLE _vb_agg_known AS SELECT k.* FROM session_days k
            WHERE {bound}k.session_id IN (SELECT session_id FROM _vb_agg_fresh)""",
        _DAILY_SESSIONS,
        f"INSERT INTO session_days ({_SD}) SELECT * FROM _vb_agg_fresh ORDER BY day, tenant_id",
        "DROP TABLE _vb_agg_known",
    ]


def _messages_statements(source: str) -> list[str]:
    return [_merge(DAILY_MESSAGES, f"""
        SELECT tenant_id::VARCHAR AS tenant_id, {day_of('created_at::TIMESTAMPTZ')} AS day,
               channel::VARCHAR AS channel, count(*)::BIGINT AS messages
        FROM {source} GROUP BY ALL""")]


def _part_rows(con: duckdb.DuckDBPyConnection) -> int:
    """How many usage rows one part may hold on this connection (see ``CHUNK_ROWS``)."""
    [(limit,)] = con.execute("SELECT current_setting('memory_limit')").fetchall()
    number, _, unit = str(limit).partition(" ")
    try:
        limit_bytes = int(float(number) * _SIZE_UNITS[unit])
    except (ValueError, KeyError):  # a form this DuckDB version does not print: the size that fits 100 MB
        limit_bytes = 100_000_000
    return max(_MIN_PART_ROWS, min(CHUNK_ROWS, limit_bytes // _BYTES_PER_ROW))


def add_usage(con: duckdb.DuckDBPyConnection, source: str, *, sessions_since: datetime | date | None = None,
              rows: int | None = None) -> None:
    """Add the usage_events rows of relation ``source`` to the aggregates (inside the caller's transaction).

    ``sessions_since``: no session of ``source`` was used before this (its
    sessions' creation time); ``None`` reads all of ``session_days``. A
    source larger than the connection's ``memory_limit`` holds at once (a
    bulk insert, a merge; ``_part_rows``) is added in parts of whole
    sessions, so memory stays bounded (a simulation's databases run with a
    100 MB limit). ``rows``: how many rows ``source`` holds, when the caller
    knows (else they are counted).
    """
    since = None
    params: list[Any] = []
    if sessions_since is not None:
        first = sessions_since.date() if isinstance(sessions_since, datetime) else sessions_since
        since, params = "?", [first - timedelta(days=1)]  # a day's margin: clocks of other hosts
    if rows is None:
        [(rows,)] = con.execute(f"SELECT count(*) FROM {source}").fetchall()
    if not rows:
        return
    # A part holds at least _MIN_PART_ROWS: a batch of live replies is one part, without asking the limit.
    parts = 1 if rows <= _MIN_PART_ROWS else max(1, -(-int(rows) // _part_rows(con)))
    for part in range(parts):
        rows_of_part = source if parts == 1 else f"(SELECT * FROM {source} WHERE hash(session_id) % {parts} = {part})"
        for i, sql in enumerate(_usage_statements(rows_of_part, since)):
            result = con.execute(sql, params if "?" in sql else None)
            if i == 1 and not result.fetchall()[0][0]:
                break  # no session used on a new day: the session counts stay as they are
        con.execute("DROP TABLE _vb_agg_fresh")  # on failure the caller's ROLLBACK drops it


def add_messages(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """Add the messages rows of relation ``source`` to ``daily_messages`` (inside the caller's transaction)."""
    for sql in _messages_statements(source):
        con.execute(sql)


def backfill(con: duckdb.DuckDBPyConnection) -> None:
    """Migration 5: the aggregates of every row stored before they existed (in the migration's transaction)."""
    add_usage(con, "usage_events")
    add_messages(con, "messages")

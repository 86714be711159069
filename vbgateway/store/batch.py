"""Applying journaled rows to DuckDB in bulk, from the journal's own JSON.

A batch of thousands of replies costs DuckDB about as much as a handful of
single-row INSERTs, so a batch goes in as one list of each record's journal
line (its JSON), which DuckDB parses once (``from_json``) into a temporary
table; one INSERT per table then picks and casts the positional columns.

Why the JSON rather than Arrow arrays built from the Python rows: the
journal thread has already written that JSON, and building Arrow from
Python objects holds the GIL for tens of milliseconds per batch, which the
event loop serving replies feels as a stall. DuckDB parses with the GIL
released, on its own threads.

The columns, their order and their types come from the table definitions
(``tables.py``), as the DDL does: the two cannot drift apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading

import duckdb

from . import aggregates
from .tables import JOURNALED_TABLES, MESSAGES, SESSION_ACTIVITY, USAGE_EVENTS, Table

__all__ = ["APPLY_NICE", "JOURNALED_COLUMNS", "apply_batch", "lower_thread_priority"]

_TS = "TIMESTAMPTZ"


def _journal_type(sql_type: str) -> str:
    """How a column's value is read back from a journal line (JSON text is taken as it was written)."""
    return "VARCHAR" if sql_type == "JSON" else sql_type


def _journal_columns(table: Table) -> tuple[tuple[str, str], ...]:
    return tuple((c.name, _journal_type(c.sql_type)) for c in table.columns)


JOURNALED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {t.name: _journal_columns(t) for t in JOURNALED_TABLES}
_INSERT_ORDER = tuple(t.name for t in JOURNALED_TABLES)
_ACTIVITY = SESSION_ACTIVITY.name
_ID, _LAST_ACTIVITY, _CREATED = (SESSION_ACTIVITY.column_names.index(name)
                                 for name in ("id", "last_activity_at", "created_at"))


def _value(kind: str, i: int) -> str:
    """SQL for column ``i`` (0-based) of a row parsed as a list of VARCHAR."""
    text = f"r[{i + 1}]"
    if kind == _TS:  # RFC 3339 text with its offset, or epoch microseconds: exact, whatever the session's TimeZone
        return (f"CASE WHEN contains({text}, 'T') THEN CAST({text} AS TIMESTAMPTZ) "
                f"ELSE to_timestamp(0) + to_microseconds(CAST({text} AS BIGINT)) END")
    if kind == "VARCHAR":
        return text
    return f"CAST({text} AS {kind})"


def _rows(table: str) -> str:
    return f"(SELECT unnest(record.{table}) AS r FROM _vb_rows)"


def _typed(table: Table) -> str:
    """The batch's rows of ``table``, typed as its columns."""
    columns = ", ".join(f"{_value(kind, i)} AS {name}" for i, (name, kind) in enumerate(JOURNALED_COLUMNS[table.name]))
    return f"SELECT {columns} FROM {_rows(table.name)}"


def _insert(table: Table) -> tuple[str, ...]:
    """The statements that insert the batch's rows of ``table``; rows the aggregates read too are staged once."""
    verb = "INSERT OR IGNORE" if table.primary_key else "INSERT"
    names = ", ".join(table.column_names)
    if table.name not in _STAGED:
        return (f"{verb} INTO {table.name} ({names}) {_typed(table)}",)
    return (f"CREATE TEMP TABLE {_STAGED[table.name]} AS {_typed(table)}",
            f"{verb} INTO {table.name} ({names}) SELECT {names} FROM {_STAGED[table.name]}")


_STAGED = {USAGE_EVENTS.name: "_vb_usage"}  # read by the insert and by the aggregates' statements: typed once


def _columns_of(table: Table, names: tuple[str, ...]) -> str:
    """The batch's rows of ``table`` with only the columns ``names``, typed (for a single read)."""
    kinds = dict(JOURNALED_COLUMNS[table.name])
    picked = ", ".join(f"{_value(kinds[name], table.column_names.index(name))} AS {name}" for name in names)
    return f"(SELECT {picked} FROM {_rows(table.name)})"


# ``daily_messages`` reads three columns of the batch's messages once: cheaper than staging them all.
_MESSAGE_DAYS = _columns_of(MESSAGES, ("tenant_id", "created_at", "channel"))
_SCHEMA = json.dumps({table: [["VARCHAR"]] for table in (*_INSERT_ORDER, _ACTIVITY)})
_LOAD = f"CREATE TEMP TABLE _vb_rows AS SELECT from_json(line, '{_SCHEMA}') AS record FROM (SELECT unnest(?) AS line)"
# Rows per table in the batch, in one scan: a statement over a table the batch has no rows of (most batches
# hold no refusals, alerts, transitions or new sessions) still costs a scan of every record. Last, the
# records that bill a reply without saying when its session was created (the reply's activity row does).
_COUNTED = (*_INSERT_ORDER, _ACTIVITY)
_COUNTS = (f"SELECT {', '.join(f'coalesce(sum(len(record.{t})), 0)' for t in _COUNTED)}, "
           f"count(*) FILTER (len(record.{USAGE_EVENTS.name}) > 0 AND coalesce(len(record.{_ACTIVITY}), 0) = 0) "
           "FROM _vb_rows")
_INSERTS: dict[str, tuple[str, ...]] = {t.name: _insert(t) for t in JOURNALED_TABLES}
# Journal lines written before the session's created_at was added to session_activity lack it.
_ACTIVITY_SPAN = (f"SELECT count(*), count(r[{_CREATED + 1}]), min({_value(_TS, _CREATED)}) "
                  f"FROM {_rows(_ACTIVITY)}")
_UPDATE_ACTIVITY = f"""UPDATE sessions SET last_activity_at = a.last_activity_at
    FROM (SELECT r[{_ID + 1}] AS id, max({_value(_TS, _LAST_ACTIVITY)}) AS last_activity_at
          FROM {_rows(_ACTIVITY)} GROUP BY 1) a
    WHERE sessions.id = a.id AND a.last_activity_at > sessions.last_activity_at"""
_UPDATE_RECENT_ACTIVITY = _UPDATE_ACTIVITY + " AND sessions.created_at >= ?"


def apply_batch(con: duckdb.DuckDBPyConnection, payloads: list[str]) -> None:
    """Insert the rows of plain records given as their JSON, and add them to the daily aggregates
    (inside the caller's transaction).

    The JSON goes in as one list parameter: cheaper than registering an Arrow table, and nothing to
    unregister if a statement fails (the caller's ROLLBACK drops the temporary tables).
    """
    con.execute(_LOAD, [payloads])
    *per_table, undated_usage = con.execute(_COUNTS).fetchall()[0]
    counts = dict(zip(_COUNTED, per_table, strict=True))
    staged = ["_vb_rows"]
    for table in _INSERT_ORDER:
        if counts[table]:
            for sql in _INSERTS[table]:
                con.execute(sql)
            if table in _STAGED:
                staged.append(_STAGED[table])
    oldest = None  # the earliest creation of the batch's sessions, when every one of them says it
    if counts[_ACTIVITY]:
        rows, dated, oldest = con.execute(_ACTIVITY_SPAN).fetchall()[0]
        if rows == dated:  # only sessions created since ``oldest`` can be touched: skip the rest
            con.execute(_UPDATE_RECENT_ACTIVITY, [oldest])
        else:
            oldest = None
            con.execute(_UPDATE_ACTIVITY)
    if counts[USAGE_EVENTS.name]:
        # A reply's record holds its session's activity row, so ``oldest`` bounds how far back the
        # aggregates look for the billed sessions' earlier days; without it they read them all.
        aggregates.add_usage(con, "_vb_usage", sessions_since=oldest if not undated_usage else None,
                             rows=counts[USAGE_EVENTS.name])
    if counts[MESSAGES.name]:
        aggregates.add_messages(con, _MESSAGE_DAYS)
    for name in staged:
        con.execute(f"DROP TABLE {name}")


# Background applies (``Applier._apply_in_background``) run on one DuckDB thread at a low priority:
# otherwise DuckDB takes both cores for a few hundred milliseconds and every reply in flight
# meanwhile takes twice as long.
APPLY_NICE = 10


def lower_thread_priority() -> None:
    """Let the calling thread yield the CPU to the others (Linux: threads have their own nice)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):  # not allowed here: run at normal priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), APPLY_NICE)

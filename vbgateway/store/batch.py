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

``JOURNALED_COLUMNS`` is the column order (and SQL type) of each journaled
table; a test checks the names against the live schema so the two cannot
drift apart.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import datetime, timedelta, timezone

import duckdb
import orjson

from .journal import JournalRecord

__all__ = ["APPLY_NICE", "JOURNALED_COLUMNS", "SESSION_ACTIVITY", "apply_batch", "lower_thread_priority", "make_plain",
           "payload_of"]

_TS = "TIMESTAMPTZ"
_STR = "VARCHAR"
_I32 = "INTEGER"

JOURNALED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "sessions": (("id", _STR), ("tenant_id", _STR), ("agent_id", _STR), ("customer_id", _STR), ("status", _STR),
                 ("metadata", _STR), ("created_at", _TS), ("last_activity_at", _TS)),
    "messages": (("id", _STR), ("tenant_id", _STR), ("session_id", _STR), ("position", _I32), ("role", _STR),
                 ("content", _STR), ("channel", _STR), ("request_id", _STR), ("created_at", _TS)),
    "provider_call_events": (("id", _STR), ("tenant_id", _STR), ("session_id", _STR), ("agent_id", _STR),
                             ("request_id", _STR), ("provider", _STR), ("status", _STR), ("http_status", _I32),
                             ("latency_ms", _I32), ("retries", _I32), ("error_code", _STR), ("created_at", _TS)),
    "usage_events": (("id", _STR), ("tenant_id", _STR), ("session_id", _STR), ("agent_id", _STR),
                     ("message_id", _STR), ("request_id", _STR), ("provider", _STR), ("channel", _STR),
                     ("tokens_in", _I32), ("tokens_out", _I32), ("usd_per_1k_tokens", "DECIMAL(18, 7)"),
                     ("cost_usd", "DECIMAL(24, 10)"), ("created_at", _TS)),
    "idempotency_records": (("tenant_id", _STR), ("key", _STR), ("request_hash", _STR), ("message_id", _STR),
                            ("response", _STR), ("created_at", _TS)),
}
# Not a table: (session_id, last_activity_at, session created_at) folded into sessions at flush time.
# The session's created_at lets the UPDATE skip the row groups of older sessions (their zone maps)
# instead of joining the whole table; journal lines written before it was added have only two values.
SESSION_ACTIVITY = "session_activity"
_ACTIVITY_COLUMNS = (("id", _STR), ("last_activity_at", _TS), ("created_at", _TS))
_INSERT_ORDER = ("sessions", "messages", "provider_call_events", "usage_events", "idempotency_records")


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def _plain_positions(columns: tuple[tuple[str, str], ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    stamps = tuple(i for i, (_, kind) in enumerate(columns) if kind == _TS)
    money = tuple(i for i, (_, kind) in enumerate(columns) if kind.startswith("DECIMAL"))
    return stamps, money


_PLAIN_POSITIONS = {table: _plain_positions(cols) for table, cols in JOURNALED_COLUMNS.items()}
_PLAIN_POSITIONS[SESSION_ACTIVITY] = _plain_positions(_ACTIVITY_COLUMNS)


def make_plain(record: JournalRecord) -> JournalRecord:
    """Turn datetimes into epoch microseconds and Decimals into strings, in place.

    The journal then encodes a record with the C JSON encoder alone (no
    per-value Python hook), and DuckDB reads both forms back exactly. A row
    may be shorter than its columns (a journal line from before a column was
    added): the missing values read as NULL.
    """
    for table, rows in record.items():
        stamps, money = _PLAIN_POSITIONS[table]
        for row in rows:
            for i in stamps:
                if i >= len(row):
                    break
                value = row[i]
                if isinstance(value, datetime):
                    row[i] = (value - _EPOCH) // _MICROSECOND
            for i in money:
                if row[i] is not None:
                    row[i] = str(row[i])
    return record


def payload_of(record: JournalRecord) -> str:
    """A plain record's JSON, as the journal writes it (for records that have no journal line).

    orjson encodes a record in about a microsecond, where ``json.dumps`` took
    sixteen: on a simulation's write path that was a twentieth of the time.
    """
    return orjson.dumps(record).decode()


def _value(kind: str, i: int) -> str:
    """SQL for column ``i`` (0-based) of a row parsed as a list of VARCHAR."""
    text = f"r[{i + 1}]"
    if kind == _TS:  # epoch microseconds; exact, and independent of the session's TimeZone
        return f"to_timestamp(0) + to_microseconds(CAST({text} AS BIGINT))"
    if kind == _STR:
        return text
    return f"CAST({text} AS {kind})"


def _rows(table: str) -> str:
    return f"(SELECT unnest(record.{table}) AS r FROM _vb_rows)"


_SCHEMA = json.dumps({table: [["VARCHAR"]] for table in (*_INSERT_ORDER, SESSION_ACTIVITY)})
_STATEMENTS = (
    f"CREATE TEMP TABLE _vb_rows AS SELECT from_json(line, '{_SCHEMA}') AS record FROM (SELECT unnest(?) AS line)",
    *(f"{'INSERT OR IGNORE' if table == 'idempotency_records' else 'INSERT'} INTO {table} "
      f"SELECT {', '.join(_value(kind, i) for i, (_, kind) in enumerate(JOURNALED_COLUMNS[table]))} FROM {_rows(table)}"
      for table in _INSERT_ORDER),
)
_ACTIVITY_SPAN = f"SELECT count(*), count(r[3]), min({_value(_TS, 2)}) FROM {_rows(SESSION_ACTIVITY)}"
_UPDATE_ACTIVITY = f"""UPDATE sessions SET last_activity_at = a.last_activity_at
    FROM (SELECT r[1] AS id, max({_value(_TS, 1)}) AS last_activity_at FROM {_rows(SESSION_ACTIVITY)} GROUP BY 1) a
    WHERE sessions.id = a.id AND a.last_activity_at > sessions.last_activity_at"""
_UPDATE_RECENT_ACTIVITY = _UPDATE_ACTIVITY + " AND sessions.created_at >= ?"


def apply_batch(con: duckdb.DuckDBPyConnection, payloads: list[str]) -> None:
    """Insert the rows of plain records given as their JSON (inside the caller's transaction).

    The JSON goes in as one list parameter: cheaper than registering an Arrow table, and nothing to
    unregister if a statement fails (the caller's ROLLBACK drops the temporary table).
    """
    con.execute(_STATEMENTS[0], [payloads])
    for sql in _STATEMENTS[1:]:
        con.execute(sql)
    rows, dated, oldest = con.execute(_ACTIVITY_SPAN).fetchall()[0]
    if rows and rows == dated:  # only sessions created since ``oldest`` can be touched: skip the rest
        con.execute(_UPDATE_RECENT_ACTIVITY, [oldest])
    elif rows:
        con.execute(_UPDATE_ACTIVITY)
    con.execute("DROP TABLE _vb_rows")


# Background applies (``Store._apply_in_background``) run on one DuckDB thread at a low priority:
# otherwise DuckDB takes both cores for a few hundred milliseconds and every reply in flight
# meanwhile takes twice as long.
APPLY_NICE = 10


def lower_thread_priority() -> None:
    """Let the calling thread yield the CPU to the others (Linux: threads have their own nice)."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), APPLY_NICE)
        except OSError:  # not allowed here: run at normal priority
            pass

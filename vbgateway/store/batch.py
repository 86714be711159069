"""Applying journaled rows to DuckDB in bulk, through Arrow.

A batch of thousands of replies costs DuckDB about as much as a handful of
single-row INSERTs, so rows are gathered per table, turned into one Arrow
table each and inserted with one statement per table. ``JOURNALED_COLUMNS``
is the column order of each journaled table (a test checks it against the
live schema so the two cannot drift apart).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

import duckdb
import pyarrow as pa

from .journal import JournalRecord

__all__ = ["JOURNALED_COLUMNS", "SESSION_ACTIVITY", "apply_batch", "make_plain"]

_TS = pa.timestamp("us", tz="UTC")
_STR = pa.string()
_I32 = pa.int32()

JOURNALED_COLUMNS: dict[str, tuple[tuple[str, pa.DataType], ...]] = {
    "sessions": (("id", _STR), ("tenant_id", _STR), ("agent_id", _STR), ("customer_id", _STR), ("status", _STR),
                 ("metadata", _STR), ("created_at", _TS), ("last_activity_at", _TS)),
    "messages": (("id", _STR), ("tenant_id", _STR), ("session_id", _STR), ("position", _I32), ("role", _STR),
                 ("content", _STR), ("channel", _STR), ("request_id", _STR), ("created_at", _TS)),
    "provider_call_events": (("id", _STR), ("tenant_id", _STR), ("session_id", _STR), ("agent_id", _STR),
                             ("request_id", _STR), ("provider", _STR), ("status", _STR), ("http_status", _I32),
                             ("latency_ms", _I32), ("retries", _I32), ("error_code", _STR), ("created_at", _TS)),
    "usage_events": (("id", _STR), ("tenant_id", _STR), ("session_id", _STR), ("agent_id", _STR),
                     ("message_id", _STR), ("request_id", _STR), ("provider", _STR), ("channel", _STR),
                     ("tokens_in", _I32), ("tokens_out", _I32), ("usd_per_1k_tokens", pa.decimal128(18, 7)),
                     ("cost_usd", pa.decimal128(24, 10)), ("created_at", _TS)),
    "idempotency_records": (("tenant_id", _STR), ("key", _STR), ("request_hash", _STR), ("message_id", _STR),
                            ("response", _STR), ("created_at", _TS)),
}
# Not a table: (session_id, last_activity_at) pairs folded into sessions at flush time.
SESSION_ACTIVITY = "session_activity"
_ACTIVITY_COLUMNS = (("id", _STR), ("last_activity_at", _TS))
_INSERT_ORDER = ("sessions", "messages", "provider_call_events", "usage_events", "idempotency_records")


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def _plain_positions(columns: tuple[tuple[str, pa.DataType], ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    stamps = tuple(i for i, (_, kind) in enumerate(columns) if pa.types.is_timestamp(kind))
    money = tuple(i for i, (_, kind) in enumerate(columns) if pa.types.is_decimal(kind))
    return stamps, money


_PLAIN_POSITIONS = {table: _plain_positions(cols) for table, cols in JOURNALED_COLUMNS.items()}
_PLAIN_POSITIONS[SESSION_ACTIVITY] = _plain_positions(_ACTIVITY_COLUMNS)


def make_plain(record: JournalRecord) -> JournalRecord:
    """Turn datetimes into epoch microseconds and Decimals into strings, in place.

    The journal then encodes a record with the C JSON encoder alone (no
    per-value Python hook), and Arrow reads both forms back exactly.
    """
    for table, rows in record.items():
        stamps, money = _PLAIN_POSITIONS[table]
        for row in rows:
            for i in stamps:
                value = row[i]
                if isinstance(value, datetime):
                    row[i] = (value - _EPOCH) // _MICROSECOND
            for i in money:
                if row[i] is not None:
                    row[i] = str(row[i])
    return record


def _to_arrow(columns: tuple[tuple[str, pa.DataType], ...], rows: list[list[Any]]) -> pa.Table:
    values = list(zip(*rows)) if rows else [() for _ in columns]
    arrays = []
    for col, (_, kind) in zip(values, columns):
        if pa.types.is_decimal(kind):  # exact: decimal text straight into decimal128
            arrays.append(pa.array([None if v is None else str(v) for v in col], pa.string()).cast(kind))
        else:
            arrays.append(pa.array(list(col), type=kind))
    return pa.Table.from_arrays(arrays, names=[name for name, _ in columns])


def apply_batch(con: duckdb.DuckDBPyConnection, records: list[JournalRecord]) -> int:
    """Insert all rows of ``records`` (inside the caller's transaction); returns rows written."""
    grouped: dict[str, list[list[Any]]] = defaultdict(list)
    for record in records:
        for table, rows in record.items():
            grouped[table].extend(rows)
    written = 0
    for table in _INSERT_ORDER:
        rows = grouped.get(table)
        if not rows:
            continue
        arrow_rows = _to_arrow(JOURNALED_COLUMNS[table], rows)
        con.register("_vb_batch", arrow_rows)
        try:
            verb = "INSERT OR IGNORE" if table == "idempotency_records" else "INSERT"
            con.execute(f"{verb} INTO {table} SELECT * FROM _vb_batch")
        finally:
            con.unregister("_vb_batch")
        written += len(rows)
    activity = grouped.get(SESSION_ACTIVITY)
    if activity:
        latest: dict[str, Any] = {}
        for session_id, at in activity:
            if session_id not in latest or at > latest[session_id]:
                latest[session_id] = at
        arrow_rows = _to_arrow(_ACTIVITY_COLUMNS, [[k, v] for k, v in latest.items()])
        con.register("_vb_activity", arrow_rows)
        try:
            con.execute("""
                UPDATE sessions SET last_activity_at = a.last_activity_at
                FROM _vb_activity a
                WHERE sessions.id = a.id AND a.last_activity_at > sessions.last_activity_at
            """)
        finally:
            con.unregister("_vb_activity")
    return written

"""From the typed rows a caller commits to a journal record, and back to plain values.

The send path hands the store one reply's rows (``MessageRow``,
``UsageEventRow``, ...). ``plain_record`` groups them by table into the
journal's record (table name -> rows as lists in column order), with
Decimals as strings, so that the journal encodes a record with orjson alone
and DuckDB reads it back exactly. It also notes what reads must know is
pending: the sessions the rows belong to and the idempotency entries they add.

Instants: a ``datetime`` in UTC stays as it is, and orjson writes it as
RFC 3339 text (``2026-12-06T17:36:34.051144+00:00``) in compiled code;
any other instant (another zone, a subclass) becomes epoch microseconds
here, exactly. DuckDB reads both forms (``batch.py``), as it reads journal
lines written before this choice (microseconds throughout). A reply's rows
hold several instants, and converting each in Python was a visible share
of the event loop's work per reply; the check that keeps a naive or
non-time value out of the journal is a small fraction of that.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

from .journal import JournalRecord
from .tables import IDEMPOTENCY_RECORDS, JOURNAL_ENTRIES, Table

__all__ = ["IdempotencyEntry", "JournalRecord", "PlainRecord", "make_plain", "payload_of", "plain_record"]

IdempotencyEntry = tuple[tuple[str, str], tuple[str, str]]  # (tenant_id, key) -> (request_hash, response)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class PlainRecord(NamedTuple):
    record: JournalRecord
    sessions: Collection[str]  # sessions with rows in the record
    idempotency: Sequence[IdempotencyEntry]


def _micros(value: datetime) -> int:
    """An instant as epoch microseconds: exact, whatever its time zone (a naive one is a TypeError)."""
    return (value - _EPOCH) // _MICROSECOND


def _instant(i: int, nullable: bool) -> str:
    """The expression for instant column ``i``: a UTC ``datetime`` as it is, any other one as microseconds."""
    t, read = f"_t{i}", f"(_t{i} := row[{i}])"
    if nullable:
        return f"(None if {read} is None else {t} if type({t}) is _datetime and {t}.tzinfo is _UTC else _micros({t}))"
    return f"({t} if type{read} is _datetime and {t}.tzinfo is _UTC else _micros({t}))"


def _plain_converter(table: Table) -> Callable[[Any], list[Any]]:
    """``row -> plain values`` for one table, generated from its columns (as ``namedtuple`` generates its methods).

    One expression that reads each field once: a loop over the positions of
    times and money cost a third more per reply, and the send path commits
    a handful of rows for every reply.
    """
    values = []
    for i, column in enumerate(table.columns):
        if column.sql_type == "TIMESTAMPTZ":
            values.append(_instant(i, column.nullable))
        elif column.sql_type.startswith("DECIMAL"):
            values.append(f"(None if row[{i}] is None else str(row[{i}]))" if column.nullable else f"str(row[{i}])")
        else:
            values.append(f"row[{i}]")
    namespace: dict[str, Any] = {"_micros": _micros, "_datetime": datetime, "_UTC": UTC}
    exec(f"def plain_{table.name}(row):\n    return [{', '.join(values)}]\n", namespace)
    return namespace[f"plain_{table.name}"]  # type: ignore[no-any-return]


class _Shape(NamedTuple):
    """How one table's rows become plain, and which of their values reads must know are pending."""

    table: str
    plain: Callable[[Any], list[Any]]
    session: int  # position of the row's session (-1: none), from ``Table.session_column``
    stamps: tuple[int, ...]  # positions of times and money, for replayed records (``make_plain``)
    money: tuple[int, ...]


def _shape(table: Table) -> _Shape:
    kinds = [c.sql_type for c in table.columns]
    session = table.column_names.index(table.session_column) if table.session_column else -1
    return _Shape(table.name, _plain_converter(table), session,
                  tuple(i for i, kind in enumerate(kinds) if kind == "TIMESTAMPTZ"),
                  tuple(i for i, kind in enumerate(kinds) if kind.startswith("DECIMAL")))


_SHAPE_OF_ROW: dict[type, _Shape] = {table.row: _shape(table) for table in JOURNAL_ENTRIES}
_SHAPE_OF_TABLE: dict[str, _Shape] = {shape.table: shape for shape in _SHAPE_OF_ROW.values()}
_IDEMPOTENCY = IDEMPOTENCY_RECORDS.name


def plain_record(rows: Iterable[Any]) -> PlainRecord:
    """One commit's typed rows as a plain journal record, with its pending sessions and keys.

    A value that is not a row of a journaled table, or a row whose time or
    money is not one, is an error before anything is written.
    """
    record: JournalRecord = {}
    sessions: set[str] = set()
    idempotency: list[IdempotencyEntry] = []
    for row in rows:
        shape = _SHAPE_OF_ROW.get(type(row))
        if shape is None:
            raise TypeError(f"a commit takes rows of the journaled tables, not {type(row).__name__}")
        table, plain, session, _, _ = shape
        values = plain(row)
        if session >= 0:
            sessions.add(row[session])
        elif table == _IDEMPOTENCY:
            idempotency.append(((row.tenant_id, row.key), (row.request_hash, row.response)))
        bucket = record.get(table)
        if bucket is None:
            record[table] = [values]
        else:
            bucket.append(values)
    return PlainRecord(record, sessions, idempotency)


def make_plain(record: JournalRecord) -> JournalRecord:
    """Turn the datetimes and Decimals of a replayed journal record plain, in place.

    Journal lines written by older versions hold ``{"$ts": ...}`` values
    (decoded to datetimes on replay) and may be shorter than today's
    columns: the missing values read as NULL.
    """
    for table, rows in record.items():
        _, _, _, stamps, money = _SHAPE_OF_TABLE[table]
        for row in rows:
            for i in stamps:
                if i >= len(row):
                    break
                value = row[i]
                if isinstance(value, datetime):
                    row[i] = _micros(value)
            for i in money:
                if i < len(row) and row[i] is not None:
                    row[i] = str(row[i])
    return record


def payload_of(record: JournalRecord) -> str:
    """A plain record's JSON, as the journal writes it (for records that have no journal line).

    orjson encodes a record in about a microsecond, where ``json.dumps`` took
    sixteen: on a simulation's write path that was a twentieth of the time.
    """
    return orjson.dumps(record).decode()

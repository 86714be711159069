"""How a table is declared: SQL types as annotations, and the ``Table`` derived from a row class.

``tables.py`` declares every table with these; this module holds the
machinery (column types, the columns read from a row class's annotations,
and the DDL, INSERT and copy statements derived from them), so that the
list of tables reads on its own.
"""

# No ``from __future__ import annotations``: the row classes' annotations are read as objects when a
# ``Table`` is defined, without evaluating strings (which cost each process ten milliseconds at start-up).
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, ForwardRef, NamedTuple, get_args, get_origin, get_type_hints

__all__ = ["BigInt", "Column", "Day", "Int", "Json", "MaybeInt", "MaybeStamp", "MaybeText", "Money", "Price", "Rate",
           "Ratio", "RatioList", "Since", "Sql", "Stamp", "Table", "Text", "TextList", "Total"]


class Sql(NamedTuple):
    """A column's SQL type, as written in the DDL."""

    type: str


class Since(NamedTuple):
    """The migration that added a column (columns without it came with their table)."""

    version: int


Text = Annotated[str, Sql("VARCHAR")]
MaybeText = Annotated[str | None, Sql("VARCHAR")]
Json = Annotated[str, Sql("JSON")]  # JSON text, as the caller wrote it
Int = Annotated[int, Sql("INTEGER")]
MaybeInt = Annotated[int | None, Sql("INTEGER")]
BigInt = Annotated[int, Sql("BIGINT")]
Stamp = Annotated[datetime, Sql("TIMESTAMPTZ")]
MaybeStamp = Annotated[datetime | None, Sql("TIMESTAMPTZ")]
Price = Annotated[Decimal, Sql("DECIMAL(18, 7)")]  # USD per 1,000 tokens: at most 7 places
Rate = Annotated[Decimal, Sql("DECIMAL(18, 4)")]  # USD per 1,000,000 tokens: at most 4 places (pricing.RATE_PLACES)
Money = Annotated[Decimal, Sql("DECIMAL(24, 10)")]
Total = Annotated[Decimal, Sql("DECIMAL(38, 10)")]  # a sum of Money: exact, with room for any number of rows
Day = Annotated[date, Sql("DATE")]  # a UTC calendar day
TextList = Annotated[list[str], Sql("VARCHAR[]")]
Ratio = Annotated[Decimal, Sql("DECIMAL(9, 6)")]  # a share of a budget (alert thresholds)
RatioList = Annotated[list[Decimal], Sql("DECIMAL(9, 6)[]")]


class Column(NamedTuple):
    name: str
    sql_type: str
    nullable: bool
    since: int
    python_type: Any


def _columns(row: type[tuple[Any, ...]], table_since: int) -> tuple[Column, ...]:
    hints = row.__annotations__
    if any(isinstance(hint, (str, ForwardRef)) for hint in hints.values()):  # postponed annotations
        hints = get_type_hints(row, include_extras=True)
    columns = []
    for name in row._fields:  # type: ignore[attr-defined]
        hint = hints[name]
        if get_origin(hint) is not Annotated:
            raise TypeError(f"{row.__name__}.{name} needs an SQL type (Annotated[..., Sql(...)])")
        python_type, *marks = get_args(hint)
        sql = next(m.type for m in marks if isinstance(m, Sql))
        since = next((m.version for m in marks if isinstance(m, Since)), table_since)
        nullable = type(None) in get_args(python_type)
        if since > table_since and not nullable:
            raise TypeError(f"{row.__name__}.{name} was added later: journal lines from before lack it, so it "
                            f"must be nullable")
        columns.append(Column(name, sql, nullable, since, python_type))
    versions = [c.since for c in columns]
    if versions != sorted(versions):
        raise TypeError(f"{row.__name__}: columns added later go at the end (ADD COLUMN appends)")
    return tuple(columns)


class Table:
    """One table (or journal entry): its name, row class and keys; the columns come from the row class.

    ``journaled``: data plane, committed to the journal and applied to DuckDB
    in batches. ``bulk``: takes ``Store.bulk_insert`` rows (synthetic
    history, imports). ``session_column`` names the session a row belongs
    to: reads of that session wait for its pending rows. ``since``: the
    migration that created the table.
    """

    __slots__ = ("bulk", "columns", "journaled", "name", "primary_key", "row", "session_column", "since", "unique")

    def __init__(self, name: str, row: type[Any], *, primary_key: tuple[str, ...] = (), unique: tuple[str, ...] = (),
                 journaled: bool = False, bulk: bool = False, session_column: str | None = None,
                 since: int = 1) -> None:
        self.name, self.row, self.since = name, row, since
        self.primary_key, self.unique = primary_key, unique  # ``unique``: columns unique on their own
        self.journaled, self.bulk, self.session_column = journaled, bulk, session_column
        self.columns = _columns(row, since)
        names = {c.name for c in self.columns}
        for name in (*self.primary_key, *self.unique, *([self.session_column] if self.session_column else [])):
            if name not in names:
                raise TypeError(f"{self.name}: no column {name!r}")

    def __repr__(self) -> str:
        return f"Table({self.name!r}, {self.row.__name__})"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def columns_at(self, version: int) -> tuple[Column, ...]:
        """The columns the table had once migration ``version`` was applied."""
        return tuple(c for c in self.columns if c.since <= version)

    def _column_ddl(self, column: Column) -> str:
        text = f"{column.name} {column.sql_type}"
        if self.primary_key == (column.name,):
            return text + " PRIMARY KEY"
        if not column.nullable:
            text += " NOT NULL"
        return text + (" UNIQUE" if column.name in self.unique else "")

    def create_sql(self, version: int, *, if_not_exists: bool = False) -> str:
        """``CREATE TABLE`` as of migration ``version``."""
        lines = [self._column_ddl(c) for c in self.columns_at(version)]
        if len(self.primary_key) > 1:
            lines.append(f"PRIMARY KEY ({', '.join(self.primary_key)})")
        body = ",\n    ".join(lines)
        return f"CREATE TABLE {'IF NOT EXISTS ' if if_not_exists else ''}{self.name} (\n    {body}\n);"

    def add_columns_sql(self, version: int) -> str:
        """``ALTER TABLE ... ADD COLUMN`` for the columns migration ``version`` adds to an older table."""
        if self.since >= version:
            return ""
        return "\n".join(f"ALTER TABLE {self.name} ADD COLUMN {self._column_ddl(c)};"
                         for c in self.columns if c.since == version)

    def insert_sql(self, *, or_ignore: bool = False) -> str:
        """A parameterised INSERT of one row, columns named (``?`` per column, in row order)."""
        verb = "INSERT OR IGNORE" if or_ignore else "INSERT"
        return (f"{verb} INTO {self.name} ({', '.join(self.column_names)}) "
                f"VALUES ({', '.join('?' * len(self.columns))})")

    def copy_sql(self, source: str) -> str:
        """Append every row of ``source`` (a table of the same definition, e.g. ``attached.messages``)."""
        names = ", ".join(self.column_names)
        return f"INSERT INTO {self.name} ({names}) SELECT {names} FROM {source}"

"""DuckDB settings changed for one piece of work, then put back as they were.

DuckDB's settings belong to the whole database, not to a cursor, and a
connection may be the caller's own (a notebook's, a test's): whatever we
change for a merge or a background apply must be restored afterwards, even
when the work fails. A setting DuckDB does not know, or a value it refuses,
is a VALIDATION_ERROR naming the setting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from ..errors import ValidationError

__all__ = ["apply_settings", "temporarily"]


def _sql_value(value: bool | int | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def apply_settings(con: duckdb.DuckDBPyConnection, **settings: bool | int | str) -> None:
    """``SET name = value`` for each setting, for good (a connection we opened ourselves)."""
    for name, value in settings.items():
        try:
            con.execute(f"SET {name} = {_sql_value(value)}")
        except duckdb.Error as exc:
            raise ValidationError(f"DuckDB refuses the setting {name} = {value!r}: {exc}",
                                  details={"setting": name, "value": str(value)}) from exc


@contextmanager
def temporarily(con: duckdb.DuckDBPyConnection, **settings: bool | int | str) -> Iterator[None]:
    """Apply ``settings`` (name = value) on ``con`` for the block, then restore each one's previous value.

    A value comes back as DuckDB reports it: exactly for numbers, flags and
    names; a memory size only to the precision DuckDB shows it with.
    """
    names = list(settings)
    try:
        before = con.execute(f"SELECT {', '.join('current_setting(?)' for _ in names)}", names).fetchall()[0]
    except duckdb.Error as exc:
        raise ValidationError(f"DuckDB does not know one of the settings {', '.join(names)}: {exc}",
                              details={"settings": names}) from exc
    try:
        apply_settings(con, **settings)  # inside: a value refused halfway puts back the ones already set
        yield
    finally:
        apply_settings(con, **dict(zip(names, before, strict=True)))

"""DuckDB connections as the store uses them: opened, in transactions, failing in our error family.

Every DuckDB exception is translated here, at the store's edge, so that no
``duckdb`` exception reaches a caller: rows a table refuses become
ROWS_REJECTED, a file another process holds DATABASE_BUSY, anything else
DATABASE_ERROR, each with the DuckDB error as its ``__cause__``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import duckdb

from ..errors import DatabaseBusyError, DatabaseError, RowsRejectedError
from .settings import apply_settings

__all__ = ["connect", "database_error", "transaction", "translated"]

_log = logging.getLogger("vbgateway.store")


def database_error(exc: duckdb.Error, doing: str, path: Path | None = None, *,
                   callers_rows: bool = True) -> DatabaseError | RowsRejectedError:
    """The error of our family that says what ``exc`` (raised while ``doing``) means to a caller.

    ``callers_rows``: the rows were the caller's, so a constraint they break
    is theirs to fix (ROWS_REJECTED); otherwise it is the database's problem.
    """
    details = {"path": str(path)} if path is not None else {}
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if callers_rows and isinstance(exc, (duckdb.ConstraintException, duckdb.ConversionException)):
        return RowsRejectedError(f"{doing}: {reason}", details=details)
    if isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower():
        return DatabaseBusyError(f"{doing}: {path or 'the database'} is locked by another process", details=details)
    return DatabaseError(f"{doing}: {reason}", details=details)


@contextmanager
def translated(doing: str, path: Path | None = None) -> Iterator[None]:
    """Run the block; a DuckDB exception leaves it as ``database_error(exc, doing, path)``."""
    try:
        yield
    except duckdb.Error as exc:
        raise database_error(exc, doing, path) from exc


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """BEGIN; COMMIT when the block ends, ROLLBACK when it fails.

    The block's own error goes on, not one from rolling back (a connection
    that broke mid-block may refuse the ROLLBACK too).
    """
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            _log.warning("rolling back after a failure failed too", exc_info=True)
        raise
    con.execute("COMMIT")


def connect(path: Path | None, *, read_only: bool = False,
            settings: Mapping[str, bool | int | str] | None = None) -> duckdb.DuckDBPyConnection:
    """Open the database file (``None``: a fresh in-memory database) with the store's settings.

    A writer creates the file's folder if need be. Timestamps are read and
    written in UTC whatever the machine's zone.
    """
    try:
        if path is not None and not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"cannot use {path}: {exc.strerror or exc}", details={"path": str(path)}) from exc
    try:
        con = duckdb.connect(":memory:" if path is None else str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise DatabaseBusyError(f"{path} is locked by another process", details={"path": str(path)}) from exc
        raise DatabaseError(f"cannot open {path}: not a readable DuckDB database",
                            details={"path": str(path)}) from exc
    except duckdb.Error as exc:
        raise DatabaseError(f"cannot open {path}: {exc}", details={"path": str(path)}) from exc
    try:
        con.execute("SET TimeZone = 'UTC'")
        apply_settings(con, **dict(settings or {}))
    except BaseException:
        con.close()
        raise
    return con

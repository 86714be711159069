"""Read-only SQL for analysis (``gw.sql``): one SELECT-like statement, after everything pending was applied.

Only SELECT and EXPLAIN are accepted: analysis must never be able to change
what was billed. A query DuckDB refuses is a VALIDATION_ERROR naming why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb

from ..errors import ValidationError
from .connection import translated
from .handle import DuckHandle

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["read", "to_frame"]

_READ_ONLY = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
T = TypeVar("T")


def read(handle: DuckHandle, flush: Callable[[], None], sql: str, params: list[Any] | None,
         fetch: Callable[[duckdb.DuckDBPyRelation], T]) -> T:
    """One read-only statement, run on its own cursor after ``flush``; ``fetch`` takes its result."""
    if not isinstance(sql, str):
        raise ValidationError("a query is a string")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ValidationError(f"query failed: {exc}") from exc
    if len(statements) != 1 or statements[0].type not in _READ_ONLY:
        raise ValidationError("gw.sql runs exactly one read-only statement (SELECT, EXPLAIN)")
    with handle.lock:
        flush()
        with translated("cannot read the database", handle.path):
            cursor = handle.connection().cursor()
        try:
            return fetch(cursor.sql(sql, params=params or None))
        except duckdb.Error as exc:
            raise ValidationError(f"query failed: {exc}") from exc
        finally:
            cursor.close()


def to_frame(table: pa.Table) -> pd.DataFrame:
    """A result as a DataFrame: DECIMAL stays exact (Arrow-backed), the rest gets ordinary pandas dtypes."""
    import pandas as pd  # loaded on first use: a gateway that only serves replies never needs them
    import pyarrow as pa

    def exact_decimals(arrow_type: pa.DataType) -> pd.ArrowDtype | None:
        return pd.ArrowDtype(arrow_type) if pa.types.is_decimal(arrow_type) else None

    return table.to_pandas(types_mapper=exact_decimals)

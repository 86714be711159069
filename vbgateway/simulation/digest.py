"""Fingerprints of a simulation's database: per-table row counts and sums of row hashes.

Kept apart from ``results`` (which needs pandas) because every gateway
instance sums its own tables where it ran, and an instance's process loads
only what serving replies needs.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["DIGEST_TABLES", "TableSums", "add_sums", "digest_of", "table_digest", "table_sums"]

DIGEST_TABLES = ("tenants", "agents", "sessions", "messages", "provider_call_events", "usage_events",
                 "idempotency_records")


TableSums = dict[str, tuple[int, int, int]]  # table -> (rows, sum of row MD5 lower halves, sum of upper halves)


def table_sums(gw: Gateway, tables: tuple[str, ...] = DIGEST_TABLES) -> TableSums:
    """Per table: the row count and the sums of each row's MD5 (its two 64-bit halves).

    The sums add up: the sums of a database that received the rows of
    several others are the sums of its own rows plus theirs. So gateway
    instances sum their own tables, in parallel, before their rows are merged.
    """
    sums: TableSums = {}
    for table in tables:
        # One MD5 per row, split in SQL: md5_number_lower/upper would hash each row twice.
        # (md5_number's high 64 bits are what md5_number_lower returns.) The row's text is its
        # values in column order, without the column names a struct's text repeats on every
        # row: a third less to format and hash.
        n, lo, hi = gw.store.query_rows(f"SELECT count(*), "
                                        f"coalesce(sum((h >> 64)::HUGEINT), 0)::VARCHAR, "
                                        f"coalesce(sum((h & {2**64 - 1})::HUGEINT), 0)::VARCHAR "
                                        f"FROM (SELECT md5_number(CAST(row(*COLUMNS(*)) AS VARCHAR)) AS h "
                                        f"FROM {table})")[0]
        sums[table] = (int(n), int(lo), int(hi))
    return sums


def add_sums(*parts: TableSums) -> TableSums:
    """The sums of a table holding the rows of all ``parts`` (tables missing from a part count as empty)."""
    total: dict[str, list[int]] = {}
    for part in parts:
        for table, values in part.items():
            acc = total.setdefault(table, [0, 0, 0])
            for i, value in enumerate(values):
                acc[i] += value
    return {table: (n, lo, hi) for table, (n, lo, hi) in total.items()}


def digest_of(sums: TableSums) -> str:
    """SHA-256 over the tables' sums, in ``DIGEST_TABLES`` order."""
    digest = hashlib.sha256()
    for table in DIGEST_TABLES:
        n, lo, hi = sums.get(table, (0, 0, 0))
        digest.update(f"{table}:{n}:{lo}:{hi}\n".encode())
    return digest.hexdigest()


def table_digest(gw: Gateway) -> str:
    """SHA-256 over every row of the data tables.

    Each row's values, as text in column order, are hashed (MD5, stable
    across DuckDB versions) and the hashes are summed per table: the sum
    does not depend on row order and streams in constant memory, where
    sorting and concatenating a month of rows would cost gigabytes.
    """
    return digest_of(table_sums(gw))

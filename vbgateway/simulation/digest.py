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
                 "idempotency_records", "breaker_transitions")


TableSums = dict[str, tuple[int, int]]  # table -> (rows, sum of the rows' 64-bit hashes)


def table_sums(gw: Gateway, tables: tuple[str, ...] = DIGEST_TABLES) -> TableSums:
    """Per table: the row count and the exact sum of each row's 64-bit hash.

    The sums add up: the sums of a database that received the rows of
    several others are the sums of its own rows plus theirs. So gateway
    instances sum their own tables, in parallel, before their rows are merged.
    A row's hash is DuckDB's ``hash`` of its values in column order, taken
    on the values themselves: formatting every row as text for MD5 cost
    fifteen times as much (3.7 s against 0.25 s on one thread for one
    instance of the benchmark month, 500,000 messages), and an instance sums
    its tables after its last reply, so the end of a run waits for it. The
    digest compares runs made with one DuckDB; it is not meant to be kept
    across DuckDB versions.
    """
    sums: TableSums = {}
    for table in tables:
        n, total = gw.store.query_rows(f"SELECT count(*), coalesce(sum(hash(row(*COLUMNS(*)))), 0)::VARCHAR "
                                       f"FROM {table}")[0]
        sums[table] = (int(n), int(total))
    return sums


def add_sums(*parts: TableSums) -> TableSums:
    """The sums of a table holding the rows of all ``parts`` (tables missing from a part count as empty)."""
    total: dict[str, list[int]] = {}
    for part in parts:
        for table, values in part.items():
            acc = total.setdefault(table, [0, 0])
            for i, value in enumerate(values):
                acc[i] += value
    return {table: (n, hashes) for table, (n, hashes) in total.items()}


def digest_of(sums: TableSums) -> str:
    """SHA-256 over the tables' sums, in ``DIGEST_TABLES`` order."""
    digest = hashlib.sha256()
    for table in DIGEST_TABLES:
        n, hashes = sums.get(table, (0, 0))
        digest.update(f"{table}:{n}:{hashes}\n".encode())
    return digest.hexdigest()


def table_digest(gw: Gateway) -> str:
    """SHA-256 over every row of the data tables.

    Each row's values, in column order, are hashed and the hashes are
    summed per table: the sum does not depend on row order and streams in
    constant memory, where sorting and concatenating a month of rows would
    cost gigabytes.
    """
    return digest_of(table_sums(gw))

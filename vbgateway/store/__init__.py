"""Persistence: DuckDB tables, their migrations, and the write-ahead journal."""

from .database import Store
from .schema import MIGRATIONS, Migration

__all__ = ["MIGRATIONS", "Migration", "Store"]

"""Reads and writes of configured providers and their price versions (control plane).

A mixin of ``Store`` like ``RecordQueries``. A database older than the
migration that added these tables (one opened read-only, which cannot be
migrated) simply has none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from .tables import PRICE_VERSIONS, PROVIDERS, PriceVersionRow, ProviderRow

__all__ = ["PROVIDERS_SINCE", "ProviderQueries"]

PROVIDERS_SINCE = PROVIDERS.since


class ProviderQueries:
    """Configured providers in, plain rows out."""

    _lock: AbstractContextManager[Any]
    _fetchall: Callable[..., list[tuple[Any, ...]]]
    _execute: Callable[[list[tuple[str, Sequence[Any]]]], None]

    @property
    def schema_version(self) -> int:  # Store's
        raise NotImplementedError

    def _has_provider_tables(self) -> bool:
        return self.schema_version >= PROVIDERS_SINCE

    def provider_rows(self) -> list[ProviderRow]:
        if not self._has_provider_tables():
            return []
        rows = self._fetchall(f"SELECT {', '.join(PROVIDERS.column_names)} FROM providers ORDER BY name")
        return [ProviderRow(*r) for r in rows]

    def price_version_rows(self) -> list[PriceVersionRow]:
        if not self._has_provider_tables():
            return []
        rows = self._fetchall(f"SELECT {', '.join(PRICE_VERSIONS.column_names)} FROM price_versions "
                              "ORDER BY provider, effective_from")
        return [PriceVersionRow(*r) for r in rows]

    def insert_provider(self, provider: ProviderRow, prices: PriceVersionRow) -> None:
        """A provider and its first prices, together."""
        self._execute([(PROVIDERS.insert_sql(), provider), (PRICE_VERSIONS.insert_sql(), prices)])

    def insert_price_version(self, prices: PriceVersionRow) -> None:
        self._execute([(PRICE_VERSIONS.insert_sql(), prices)])

    def delete_provider(self, name: str) -> None:
        """The provider and its price versions (events keep the rates they were billed at)."""
        self._execute([("DELETE FROM price_versions WHERE provider = ?", [name]),
                       ("DELETE FROM providers WHERE name = ?", [name])])

    def agents_naming_provider(self, name: str) -> list[tuple[str, str]]:
        """(tenant id, agent id) of every agent whose primary or fallback is ``name``."""
        return [(str(t), str(a)) for t, a in self._fetchall(
            "SELECT tenant_id, id FROM agents WHERE primary_provider = ? OR fallback_provider = ? "
            "ORDER BY tenant_id, created_at, id", [name, name])]

"""Reads and writes of keys and rate limits (the governance control plane).

A mixin of ``Store``, like ``queries.RecordQueries``: plain rows in and out.
These tables are small and rarely written; the send path never reads them
(the gateway keeps what it needs in memory, ``governance/``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from ..models import Tenant
from .tables import API_KEYS, RATE_LIMITS, TENANTS, ApiKeyRow, RateLimitRow, TenantRow

__all__ = ["GovernanceQueries"]

_KEY_COLUMNS = ", ".join(API_KEYS.column_names)
_LIMIT_COLUMNS = ", ".join(RATE_LIMITS.column_names)
_UPSERT_LIMIT = (f"INSERT INTO rate_limits ({_LIMIT_COLUMNS}) VALUES ({', '.join('?' * len(RATE_LIMITS.columns))}) "
                 f"ON CONFLICT (subject_id) DO UPDATE SET "
                 + ", ".join(f"{c} = excluded.{c}" for c in RATE_LIMITS.column_names if c != "subject_id"))


class GovernanceQueries:
    """API keys (scopes, expiry, rotation, last use) and rate limits."""

    _lock: AbstractContextManager[Any]
    _fetchall: Callable[..., list[tuple[Any, ...]]]
    _execute: Callable[[list[tuple[str, Sequence[Any]]]], None]

    # ----------------------------------------------------------------- keys
    def insert_key(self, row: ApiKeyRow, limit: RateLimitRow | None = None) -> None:
        """A new key and its own rate limit, together."""
        statements: list[tuple[str, Sequence[Any]]] = [(API_KEYS.insert_sql(), row)]
        if limit is not None:
            statements.append((_UPSERT_LIMIT, limit))
        self._execute(statements)

    def key_by_hash(self, key_hash: str) -> tuple[ApiKeyRow, Tenant] | None:
        """The key with that hash and its tenant, whatever the key's state (the caller decides)."""
        tenant_columns = ", ".join("t." + name for name in TENANTS.column_names)
        key_columns = ", ".join("k." + name for name in API_KEYS.column_names)
        rows = self._fetchall(f"SELECT {key_columns}, {tenant_columns} FROM api_keys k "
                              f"JOIN tenants t ON t.id = k.tenant_id WHERE k.key_hash = ?", [key_hash])
        if not rows:
            return None
        width = len(API_KEYS.columns)
        tenant = TenantRow(*rows[0][width:])
        return ApiKeyRow(*rows[0][:width]), Tenant(id=tenant.id, name=tenant.name, created_at=tenant.created_at)

    def key_by_id(self, key_id: str) -> ApiKeyRow | None:
        rows = self._fetchall(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", [key_id])
        return ApiKeyRow(*rows[0]) if rows else None

    def key_rows(self, tenant_id: str) -> list[ApiKeyRow]:
        """A tenant's keys, oldest first."""
        rows = self._fetchall(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? ORDER BY created_at, rowid",
                              [tenant_id])
        return [ApiKeyRow(*r) for r in rows]

    def rotate_key(self, old_id: str, old_expires_at: datetime, rotated_at: datetime, new: ApiKeyRow,
                   limit: RateLimitRow | None) -> bool:
        """Give ``old_id`` its grace end and its successor, and store the successor, together.

        False (nothing written) when ``old_id`` is not an active key that was never rotated.
        """
        with self._lock:
            rows = self._fetchall("SELECT 1 FROM api_keys WHERE id = ? AND revoked_at IS NULL AND replaced_by IS NULL",
                                  [old_id])
            if not rows:
                return False
            statements: list[tuple[str, Sequence[Any]]] = [
                (API_KEYS.insert_sql(), new),
                ("UPDATE api_keys SET expires_at = ?, rotated_at = ?, replaced_by = ? WHERE id = ?",
                 [old_expires_at, rotated_at, new.id, old_id])]
            if limit is not None:
                statements.append((_UPSERT_LIMIT, limit))
            self._execute(statements)
            return True

    def write_last_used(self, used: Mapping[str, datetime]) -> None:
        """Each key's latest use, in one statement (an earlier time never replaces a later one)."""
        if not used:
            return
        pairs = list(used.items())  # one pass: a use noted meanwhile (another thread) cannot unpair them
        ids, times = [key_id for key_id, _ in pairs], [at for _, at in pairs]
        self._execute([("""UPDATE api_keys SET last_used_at = u.at
                           FROM (SELECT unnest(?::VARCHAR[]) AS id, unnest(?::TIMESTAMPTZ[]) AS at) u
                           WHERE api_keys.id = u.id AND (api_keys.last_used_at IS NULL OR u.at > api_keys.last_used_at)""",
                        [ids, times])])

    # ----------------------------------------------------------------- rate limits
    def rate_limit_rows(self) -> list[RateLimitRow]:
        return [RateLimitRow(*r) for r in self._fetchall(f"SELECT {_LIMIT_COLUMNS} FROM rate_limits")]

    def set_rate_limit_row(self, subject_id: str, row: RateLimitRow | None) -> None:
        """Store a tenant's or key's limit; None removes it."""
        if row is None:
            self._execute([("DELETE FROM rate_limits WHERE subject_id = ?", [subject_id])])
        else:
            self._execute([(_UPSERT_LIMIT, row)])

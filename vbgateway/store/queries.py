"""Reads and writes of individual records: tenants, keys, agents, sessions, messages.

A mixin of ``Store`` (which provides ``_fetchall`` and ``_execute``), kept
apart so that the store's own module is about durability and lending only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..models import Agent, ApiKeyInfo, Session, Tenant

__all__ = ["RecordQueries"]


class RecordQueries:
    """Plain models in and out; every query scoped as its caller asks."""

    # Provided by Store: run a read (applying pending rows of ``flush_for`` first), run writes atomically.
    _fetchall: Callable[..., list[tuple[Any, ...]]]
    _execute: Callable[[list[tuple[str, list[Any]]]], None]

    def insert_tenant(self, tenant: Tenant, key: ApiKeyInfo, key_hash: str) -> None:
        self._execute([
            ("INSERT INTO tenants VALUES (?, ?, ?)", [tenant.id, tenant.name, tenant.created_at]),
            ("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)",
             [key.id, key.tenant_id, key_hash, key.prefix, key.created_at]),
        ])

    def insert_api_key(self, key: ApiKeyInfo, key_hash: str) -> None:
        self._execute([("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)",
                        [key.id, key.tenant_id, key_hash, key.prefix, key.created_at])])

    def revoke_api_key(self, key_id: str, at: Any) -> bool:
        with self._lock:
            rows = self._fetchall("SELECT 1 FROM api_keys WHERE id = ? AND revoked_at IS NULL", [key_id])
            if rows:
                self._execute([("UPDATE api_keys SET revoked_at = ? WHERE id = ?", [at, key_id])])
            return bool(rows)

    def tenant_for_key(self, key_hash: str) -> Tenant | None:
        rows = self._fetchall("""
            SELECT t.id, t.name, t.created_at FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
            WHERE k.key_hash = ? AND k.revoked_at IS NULL""", [key_hash])
        return Tenant(id=rows[0][0], name=rows[0][1], created_at=rows[0][2]) if rows else None

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        rows = self._fetchall("SELECT id, name, created_at FROM tenants WHERE id = ?", [tenant_id])
        return Tenant(id=rows[0][0], name=rows[0][1], created_at=rows[0][2]) if rows else None

    def list_tenants(self) -> list[Tenant]:
        rows = self._fetchall("SELECT id, name, created_at FROM tenants ORDER BY created_at, rowid")
        return [Tenant(id=r[0], name=r[1], created_at=r[2]) for r in rows]

    def list_api_keys(self, tenant_id: str) -> list[ApiKeyInfo]:
        rows = self._fetchall("""SELECT id, tenant_id, key_prefix, created_at, revoked_at FROM api_keys
                                 WHERE tenant_id = ? ORDER BY created_at, rowid""", [tenant_id])
        return [ApiKeyInfo(id=r[0], tenant_id=r[1], prefix=r[2], created_at=r[3], revoked_at=r[4]) for r in rows]

    _AGENT_COLUMNS = ("id, tenant_id, name, primary_provider, fallback_provider, system_prompt, enabled_tools, "
                      "created_at, updated_at")

    @staticmethod
    def _agent(row: tuple[Any, ...]) -> Agent:
        return Agent(id=row[0], tenant_id=row[1], name=row[2], primary_provider=row[3], fallback_provider=row[4],
                     system_prompt=row[5], enabled_tools=list(row[6]), created_at=row[7], updated_at=row[8])

    def insert_agent(self, agent: Agent) -> None:
        values = [agent.id, agent.tenant_id, agent.name, agent.primary_provider, agent.fallback_provider,
                  agent.system_prompt, agent.enabled_tools, agent.created_at, agent.updated_at]
        self._execute([(f"INSERT INTO agents ({self._AGENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)])

    def update_agent(self, agent: Agent) -> None:
        """Update in place (the row keeps its place in creation order)."""
        self._execute([("""UPDATE agents SET name = ?, primary_provider = ?, fallback_provider = ?, system_prompt = ?,
                                              enabled_tools = ?, updated_at = ?
                           WHERE tenant_id = ? AND id = ?""",
                        [agent.name, agent.primary_provider, agent.fallback_provider, agent.system_prompt,
                         agent.enabled_tools, agent.updated_at, agent.tenant_id, agent.id])])

    def get_agent(self, tenant_id: str, agent_id: str) -> Agent | None:
        rows = self._fetchall(f"SELECT {self._AGENT_COLUMNS} FROM agents WHERE tenant_id = ? AND id = ?",
                              [tenant_id, agent_id])
        return self._agent(rows[0]) if rows else None

    def list_agents(self, tenant_id: str) -> list[Agent]:
        rows = self._fetchall(f"SELECT {self._AGENT_COLUMNS} FROM agents WHERE tenant_id = ? ORDER BY created_at, rowid",
                              [tenant_id])
        return [self._agent(r) for r in rows]

    # ----------------------------------------------------------------- data-plane reads
    def get_session(self, tenant_id: str, session_id: str) -> Session | None:
        rows = self._fetchall("""
            SELECT id, tenant_id, agent_id, customer_id, status, metadata, created_at, last_activity_at
            FROM sessions WHERE tenant_id = ? AND id = ?""", [tenant_id, session_id], flush_for=session_id)
        if not rows:
            return None
        r = rows[0]
        return Session(id=r[0], tenant_id=r[1], agent_id=r[2], customer_id=r[3], status=r[4],
                       metadata=json.loads(r[5]), created_at=r[6], last_activity_at=r[7])

    def messages(self, session_id: str) -> list[tuple[str, str, str, Any, int]]:
        """(id, role, content, created_at, position) of a session, oldest first."""
        return [tuple(r) for r in self._fetchall("""
            SELECT id, role, content, created_at, position FROM messages
            WHERE session_id = ? ORDER BY position""", [session_id], flush_for=session_id)]

    def provider_calls(self, session_id: str) -> list[tuple[str, str, str, int, Any]]:
        """(id, provider, status, latency_ms, created_at) of a session, oldest first."""
        return [tuple(r) for r in self._fetchall("""
            SELECT id, provider, status, latency_ms, created_at FROM provider_call_events
            WHERE session_id = ? ORDER BY created_at, request_id, id""", [session_id], flush_for=session_id)]

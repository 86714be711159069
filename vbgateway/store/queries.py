"""Reads and writes of individual records: tenants, keys, agents, sessions, messages.

A mixin of ``Store`` (which provides ``_fetchall`` and ``_execute``), kept
apart so that ``database.py`` only puts the store's parts together.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Literal, NamedTuple

from ..models import DEFAULT_MAX_OUTPUT_TOKENS, Agent, ApiKeyInfo, Session, Tenant
from .tables import AGENTS, API_KEYS, SESSIONS, TENANTS, AgentRow, ApiKeyRow, SessionRow, TenantRow

__all__ = ["RecordQueries", "StoredCall", "StoredMessage"]


class StoredMessage(NamedTuple):
    id: str
    role: Literal["user", "assistant"]
    content: str
    created_at: datetime
    position: int


class StoredCall(NamedTuple):
    id: str
    provider: str
    status: Literal["ok", "failed", "skipped"]
    latency_ms: int
    created_at: datetime


def _key_row(key: ApiKeyInfo, key_hash: str) -> ApiKeyRow:
    return ApiKeyRow(key.id, key.tenant_id, key_hash, key.prefix, key.created_at, None)


def _tenant(values: Sequence[Any]) -> Tenant:
    row = TenantRow(*values)
    return Tenant(id=row.id, name=row.name, created_at=row.created_at)


_TENANT_COLUMNS = ", ".join(TENANTS.column_names)


class RecordQueries:
    """Plain models in and out; every query scoped as its caller asks."""

    # Provided by Store: its DuckDB lock, a read (applying pending rows of ``flush_for`` first), atomic writes.
    _lock: AbstractContextManager[Any]
    _fetchall: Callable[..., list[tuple[Any, ...]]]
    _execute: Callable[[list[tuple[str, Sequence[Any]]]], None]

    def insert_tenant(self, tenant: Tenant, key: ApiKeyInfo, key_hash: str) -> None:
        self._execute([(TENANTS.insert_sql(), TenantRow(tenant.id, tenant.name, tenant.created_at)),
                       (API_KEYS.insert_sql(), _key_row(key, key_hash))])

    def insert_api_key(self, key: ApiKeyInfo, key_hash: str) -> None:
        self._execute([(API_KEYS.insert_sql(), _key_row(key, key_hash))])

    def revoke_api_key(self, key_id: str, at: Any) -> bool:
        with self._lock:
            rows = self._fetchall("SELECT 1 FROM api_keys WHERE id = ? AND revoked_at IS NULL", [key_id])
            if rows:
                self._execute([("UPDATE api_keys SET revoked_at = ? WHERE id = ?", [at, key_id])])
            return bool(rows)

    def tenant_for_key(self, key_hash: str) -> Tenant | None:
        rows = self._fetchall(f"""
            SELECT {', '.join('t.' + name for name in TENANTS.column_names)}
            FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
            WHERE k.key_hash = ? AND k.revoked_at IS NULL""", [key_hash])
        return _tenant(rows[0]) if rows else None

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        rows = self._fetchall(f"SELECT {_TENANT_COLUMNS} FROM tenants WHERE id = ?", [tenant_id])
        return _tenant(rows[0]) if rows else None

    def list_tenants(self) -> list[Tenant]:
        rows = self._fetchall(f"SELECT {_TENANT_COLUMNS} FROM tenants ORDER BY created_at, rowid")
        return [_tenant(r) for r in rows]

    def list_api_keys(self, tenant_id: str) -> list[ApiKeyInfo]:
        rows = self._fetchall(f"""SELECT {', '.join(API_KEYS.column_names)} FROM api_keys
                                  WHERE tenant_id = ? ORDER BY created_at, rowid""", [tenant_id])
        keys = [ApiKeyRow(*r) for r in rows]
        return [ApiKeyInfo(id=k.id, tenant_id=k.tenant_id, prefix=k.key_prefix, created_at=k.created_at,
                           revoked_at=k.revoked_at) for k in keys]

    _AGENT_COLUMNS = ", ".join(AGENTS.column_names)

    @staticmethod
    def _agent(values: tuple[Any, ...]) -> Agent:
        row = AgentRow(*values)
        return Agent(id=row.id, tenant_id=row.tenant_id, name=row.name, primary_provider=row.primary_provider,
                     fallback_provider=row.fallback_provider, system_prompt=row.system_prompt,
                     enabled_tools=list(row.enabled_tools), created_at=row.created_at, updated_at=row.updated_at,
                     max_output_tokens=row.max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS)

    def insert_agent(self, agent: Agent) -> None:
        row = AgentRow(agent.id, agent.tenant_id, agent.name, agent.primary_provider, agent.fallback_provider,
                       agent.system_prompt, agent.enabled_tools, agent.created_at, agent.updated_at,
                       agent.max_output_tokens)
        self._execute([(AGENTS.insert_sql(), row)])

    def update_agent(self, agent: Agent) -> None:
        """Update in place (the row keeps its place in creation order)."""
        self._execute([("""UPDATE agents SET name = ?, primary_provider = ?, fallback_provider = ?, system_prompt = ?,
                                              enabled_tools = ?, updated_at = ?, max_output_tokens = ?
                           WHERE tenant_id = ? AND id = ?""",
                        [agent.name, agent.primary_provider, agent.fallback_provider, agent.system_prompt,
                         agent.enabled_tools, agent.updated_at, agent.max_output_tokens, agent.tenant_id, agent.id])])

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
        rows = self._fetchall(f"""
            SELECT {', '.join(SESSIONS.column_names)}
            FROM sessions WHERE tenant_id = ? AND id = ?""", [tenant_id, session_id], flush_for=session_id)
        if not rows:
            return None
        row = SessionRow(*rows[0])
        return Session(id=row.id, tenant_id=row.tenant_id, agent_id=row.agent_id, customer_id=row.customer_id,
                       status=row.status, metadata=json.loads(row.metadata), created_at=row.created_at,
                       last_activity_at=row.last_activity_at)

    def messages(self, session_id: str) -> list[StoredMessage]:
        """A session's messages, oldest first."""
        return [StoredMessage(*r) for r in self._fetchall(f"""
            SELECT {', '.join(StoredMessage._fields)} FROM messages
            WHERE session_id = ? ORDER BY position""", [session_id], flush_for=session_id)]

    def provider_calls(self, session_id: str) -> list[StoredCall]:
        """A session's provider calls, oldest first."""
        return [StoredCall(*r) for r in self._fetchall(f"""
            SELECT {', '.join(StoredCall._fields)} FROM provider_call_events
            WHERE session_id = ? ORDER BY created_at, request_id, id""", [session_id], flush_for=session_id)]

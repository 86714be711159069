"""The facade: tenants and keys for operators, tenant clients for everyone else.

``Gateway`` holds policy (providers, retry policy, circuit breakers, prices,
clock) and the store; widgets, the HTTP API, the CLI and the simulator all go
through it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import duckdb

from .clock import Clock, SystemClock, VirtualClock
from .errors import NotFoundError, ValidationError
from .governance import KeyRing, RateLimiter, RefusalLog, budget_admin
from .governance.breaker import BreakerPolicy, Breakers, BreakerState
from .governance.budget_values import DEFAULT_ALERT_AT, Budget
from .ids import IdFactory, hash_api_key, key_display_prefix, new_api_key
from .messaging import MessageSender
from .metrics import GatewayMetrics
from .models import Agent, ApiKeyInfo, RateLimit, Tenant, clean_text
from .pricing import PriceTable
from .providers import Provider, default_providers
from .providers.registry import install
from .reliability import RetryPolicy
from .store import Store
from .store.database import DEFAULT_FLUSH_ROWS
from .tenant import TenantClient
from .tracing import enable_from_environment

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Gateway"]

MAX_TENANT_NAME = 200


class Gateway:
    """A multi-tenant agent gateway over one database."""

    def __init__(self, store: Store, *, providers: Mapping[str, Provider] | None = None, clock: Clock | None = None,
                 retry: RetryPolicy | None = None, prices: PriceTable | Mapping[str, Any] | None = None,
                 seed: int | str | None = None, breaker: BreakerPolicy | None = None) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.providers: dict[str, Provider] = dict(providers or default_providers(seed))
        self.retry = retry or RetryPolicy()
        # Configured providers and stored prices join the given ones; every provider must have a price.
        self.prices = install(store, self.providers, prices if isinstance(prices, PriceTable) else PriceTable(prices))
        for provider in self.providers.values():
            provider.bind(self.clock)
        # A seeded gateway is reproducible on a fresh database, and never reuses
        # ids when it reopens one: the database's open count joins the seed.
        run_seed = None if seed is None else f"{seed}:{store.open_count}"
        self.ids = IdFactory(run_seed)
        self.metrics = GatewayMetrics()  # GET /metrics; other parts register their counters on it
        self.breaker = breaker
        self.breakers = None if breaker is None else Breakers(
            breaker, self.providers, self.clock,
            IdFactory(None if run_seed is None else f"{run_seed}/breakers").new("gw"))  # its own draw: ids stay
        self.metrics.watch_breakers(self.breakers)
        enable_from_environment(self)  # VBGATEWAY_OTEL=1: OpenTelemetry spans per reply (tracing.py)
        # Governance (vbgateway/governance/): refused requests, rate limits, keys, budgets.
        self.refusals = RefusalLog(store, self.clock, self.metrics)
        self.rate_limits = RateLimiter(self.clock, self.refusals, store)
        self.keys = KeyRing(store, self.clock, self.ids, self.rate_limits)
        if not store.read_only:
            self.rate_limits.load(store.rate_limit_rows())
            store.before_flush += [self.refusals.flush, self.keys.write_usage]
        self.budgets = budget_admin.open_ledger(store, self.clock, self.prices, self.refusals)
        self.sender = MessageSender(store=store, providers=self.providers, retry=self.retry, clock=self.clock,
                                    ids=self.ids, prices=self.prices, agents=self.agent_for,
                                    rng=random.Random(run_seed), breakers=self.breakers,
                                    limits=self.rate_limits, budgets=self.budgets, metrics=self.metrics)
        self._agents: dict[str, Agent] = {}

    @classmethod
    def open(cls, target: str | Path | duckdb.DuckDBPyConnection = "data/vbgateway.duckdb", *,
             providers: Mapping[str, Provider] | None = None, clock: Clock | None = None,
             retry: RetryPolicy | None = None, prices: PriceTable | Mapping[str, Any] | None = None,
             seed: int | str | None = None, flush_records: int | None = None,
             breaker: BreakerPolicy | None = None) -> Gateway:
        """Open (creating or migrating) a database file, ``":memory:"`` or an open DuckDB connection.

        ``breaker``: a circuit breaker per provider with that policy (``governance/breaker.py``);
        ``None`` (the default) calls every provider every time, as retries and fallback decide.
        """
        clock = clock or SystemClock()
        # On virtual time concurrent commits share an fsync within the clock's window of virtual time.
        window = clock.commit_window_s if isinstance(clock, VirtualClock) else None
        store = Store(target, now=clock.now(), commit_window_s=window,
                      flush_records=flush_records or DEFAULT_FLUSH_ROWS)
        try:
            return cls(store, providers=providers, clock=clock, retry=retry, prices=prices, seed=seed,
                       breaker=breaker)
        except BaseException:
            store.close()  # e.g. a provider without a price: the file is not left held
            raise

    @classmethod
    def open_reader(cls, path: str | Path, *, wait_s: float = 60.0, providers: Mapping[str, Provider] | None = None,
                    prices: PriceTable | Mapping[str, Any] | None = None, clock: Clock | None = None) -> Gateway:
        """A read-only gateway for reports and exports.

        Works while another process serves traffic on the same file: that
        gateway applies every committed reply to DuckDB and lends the file for
        as long as this one is open (its own replies keep committing to its
        journal meanwhile). Close it promptly: the writer waits for it before
        it touches DuckDB again.
        """
        store = Store(path, read_only=True, wait_s=wait_s)
        return cls(store, providers=providers, clock=clock, prices=prices)

    def close(self) -> None:
        """Apply everything pending, checkpoint and release the database: the file alone then holds it all.

        Closing again does nothing. A gateway still open when the interpreter
        exits (a script's end, a notebook kernel shut down or restarted) is
        closed then, by its store.
        """
        try:
            if self.breakers is not None and self.breakers.pending:  # left by a cancelled request
                self.store.commit(self.breakers.take())
        finally:
            self.store.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gateway({self.store.path or ':memory:'}, providers={sorted(self.providers)}, clock={self.clock!r})"

    # ------------------------------------------------------------------ operators
    def create_tenant(self, name: str) -> tuple[Tenant, str]:
        """Create a tenant and its first API key; the key is returned once and stored hashed."""
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_TENANT_NAME:
            raise ValidationError(f"a tenant name is 1-{MAX_TENANT_NAME} characters", details={"field": "name"})
        try:
            clean_text(name)
        except ValueError as exc:
            raise ValidationError(str(exc), details={"field": "name"}) from exc
        now = self.clock.now()
        tenant = Tenant(id=self.ids.new("tnt"), name=name, created_at=now)
        api_key = new_api_key()
        info = ApiKeyInfo(id=self.ids.new("key"), tenant_id=tenant.id, prefix=key_display_prefix(api_key),
                          created_at=now)
        self.store.insert_tenant(tenant, info, hash_api_key(api_key))
        return tenant, api_key

    def create_api_key(self, tenant_id: str, *, scopes: Iterable[str] | str | None = None,
                       expires_at: datetime | None = None,
                       rate_limit: RateLimit | Mapping[str, int | None] | None = None) -> tuple[str, str]:
        """Another key for a tenant: (key id, secret key), the key shown this once.

        ``scopes``: what it may do (governance/scopes.py; default every scope);
        ``expires_at``: an aware datetime from which it is refused;
        ``rate_limit``: its own ``{"requests_per_minute": ..., "tokens_per_minute": ...}``,
        on top of the tenant's.
        """
        return self.keys.create(self.get_tenant(tenant_id), scopes=scopes, expires_at=expires_at,
                                rate_limit=rate_limit)

    def rotate_api_key(self, key_id: str, grace_s: float = 3600) -> tuple[str, str]:
        """A new key (same tenant, scopes, expiry, rate limit) now; the old one works ``grace_s`` more seconds."""
        return self.keys.rotate(key_id, grace_s)

    def revoke_api_key(self, key_id: str) -> None:
        """Revoke a key at once; it is refused from now on, also by clients already connected with it."""
        self.keys.revoke(key_id)

    def list_api_keys(self, tenant_id: str) -> list[ApiKeyInfo]:
        """A tenant's keys, oldest first: scopes, expiry, last use, rotation, rate limit and status."""
        return self.keys.list_keys(self.get_tenant(tenant_id).id)

    def set_rate_limit(self, tenant_id: str, requests_per_minute: int | None = None,
                       tokens_per_minute: int | None = None) -> RateLimit | None:
        """The tenant's whole limit (governance/rate_limits.py); None for no limit of that kind, both None removes it."""
        tenant = self.get_tenant(tenant_id)
        return self.rate_limits.set(tenant.id, tenant.id, "tenant", {"requests_per_minute": requests_per_minute,
                                                                     "tokens_per_minute": tokens_per_minute})

    def get_rate_limit(self, tenant_id: str) -> RateLimit | None:
        return self.rate_limits.limit_of(self.get_tenant(tenant_id).id)

    def set_budget(self, tenant_id: str, monthly_usd: Decimal | int | str | None,
                   alert_at: budget_admin.AlertAt = DEFAULT_ALERT_AT) -> Budget | None:
        """A monthly spend limit in USD (UTC calendar months) that replies can never pass; ``None`` removes it.

        ``alert_at``: shares of the limit (ascending, in (0, 1]) at which the
        month's spend is logged and recorded in ``budget_alerts``, once each.
        Returns the budget as it now stands (``get_budget``).
        """
        return budget_admin.set_budget(self, tenant_id, monthly_usd, alert_at)

    def get_budget(self, tenant_id: str) -> Budget | None:
        """The tenant's budget this month: monthly_usd, spent, reserved, remaining, alerts; None without one."""
        return budget_admin.get_budget(self, tenant_id)

    def get_tenant(self, tenant_id: str) -> Tenant:
        tenant = self.store.get_tenant(tenant_id) if isinstance(tenant_id, str) else None
        if tenant is None:
            raise NotFoundError("tenant not found", details={"tenantId": str(tenant_id)[:100]})
        return tenant

    def list_tenants(self) -> list[Tenant]:
        return self.store.list_tenants()

    def tenant_named(self, name: str, *, not_found_code: str = "NOT_FOUND") -> Tenant:
        """The one tenant of that name: a name several tenants share is a VALIDATION_ERROR naming their
        ids (never a guess), none a NOT_FOUND (``not_found_code`` where a route names it otherwise)."""
        named = [t for t in self.store.list_tenants() if t.name == name]
        if len(named) == 1:
            return named[0]
        if named:
            raise ValidationError(f"{len(named)} tenants are named {name[:100]!r}: give the tenant id",
                                  details={"tenantName": name[:100], "tenantIds": [t.id for t in named]})
        raise NotFoundError(f"no tenant with id or name {name[:100]!r}", code=not_found_code,
                            details={"tenantName": name[:100]})

    def connect(self, api_key: str) -> TenantClient:
        """The tenant client for an API key, with its scopes; unknown, revoked or expired keys raise INVALID_API_KEY."""
        tenant, grant = self.keys.authenticate(api_key)
        return TenantClient(self, tenant, grant)

    def as_tenant(self, tenant_id: str) -> TenantClient:
        """Operator access to a tenant without its key (seeding, simulation, support): every scope, no key limit."""
        return TenantClient(self, self.get_tenant(tenant_id))

    # ------------------------------------------------------------------ shared by tenant clients
    def agent_for(self, tenant_id: str, agent_id: str) -> Agent | None:
        agent = self._agents.get(agent_id)
        if agent is None:
            agent = self.store.get_agent(tenant_id, agent_id)
            if agent is not None:
                self.remember_agent(agent)
        return agent if agent is not None and agent.tenant_id == tenant_id else None

    def remember_agent(self, agent: Agent) -> None:
        self._agents[agent.id] = agent

    def breaker_states(self) -> dict[str, BreakerState]:
        """Per provider: its circuit breaker's state, since when, and the calls and failure rate in its window.

        Empty without a breaker policy. Breakers belong to this process; the
        ``breaker_transitions`` table holds every change of every process.
        """
        return {} if self.breakers is None else self.breakers.states()

    def sql(self, query: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Read-only SQL over the tables (README, "Database schema"), as a DataFrame."""
        return self.store.query(query, params)

    def now(self) -> datetime:
        return self.clock.now()

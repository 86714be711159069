"""Open the notebooks' database: through the local service every kernel shares, or embedded.

Notebooks take a database path and an optional API key from their papermill
``parameters`` cell. By default the database is reached through its local
gateway service (``vbgateway.client.service``): the first kernel starts it,
every later one reuses it, so any number of notebooks work on one database at
the same time. The service seeds the demo tenants when the database has none
(an operator action, guarded by the operator secret next to the database).

With no key, the notebooks use one demo key, minted once for the demo tenant
and kept in ``<db>.demo-key.json`` (mode 0600): keys are shown only once when
created, and a notebook run should not leave a new key behind every time.

Given gateway options (a clock, providers, a seed: tests and simulations),
``open_workbench`` opens the database in this process instead, as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from ..client import HttpTenantClient, connect
from ..client.service import ServiceInfo, ensure_service, operator_secret, write_private
from ..clock import SystemClock
from ..errors import AuthenticationError, GatewayError
from ..gateway import Gateway
from ..seed import seed_demo

__all__ = ["DEFAULT_TENANT", "LocalService", "Workbench", "demo_key_path", "open_workbench"]

DEFAULT_TENANT = "Acme Corporation"
OPERATOR_TIMEOUT_S = 60.0


def demo_key_path(db: str | Path) -> Path:
    return Path(f"{Path(db).resolve()}.demo-key.json")


class LocalService:
    """What the panels ask of a ``Gateway`` (connect, providers, now, clock), answered by the local service.

    The panels hold either one; with this one, every tenant client they get is
    an ``HttpTenantClient`` and coroutines run on a real event loop (the
    kernel's, or ``asyncio.run`` outside one).
    """

    def __init__(self, db: str | Path, info: ServiceInfo, secret: str) -> None:
        self.db = Path(db)
        self.info = info
        self.url = info.url
        self.clock = SystemClock()
        self._secret = secret
        self._providers: list[str] | None = None

    def __repr__(self) -> str:
        return f"LocalService({self.url!r}, pid={self.info.pid})"

    def _operator(self, path: str, body: dict[str, Any] | None = None, *, method: str = "POST") -> dict[str, Any]:
        answer = httpx.request(method, f"{self.url}/v1/operator/{path}", json=(body or {}) if method == "POST" else None,
                               timeout=OPERATOR_TIMEOUT_S, headers={"X-Operator-Secret": self._secret})
        payload: dict[str, Any] = answer.json()
        if answer.status_code >= 400:
            error = payload.get("error", {})
            raise GatewayError(error.get("message", answer.text), code=error.get("code", "INTERNAL_ERROR"),
                               details=error.get("details"), http_status=answer.status_code)
        return payload

    def seed(self) -> bool:
        """Seed the demo tenants if the database has none; True when this call did."""
        answer = self._operator("seed")
        self._providers = list(answer["providers"])
        return bool(answer["seeded"])

    def mint_key(self, tenant_name: str) -> str:
        return str(self._operator("api-keys", {"tenantName": tenant_name})["apiKey"])

    def breakers(self, limit: int = 50) -> dict[str, Any]:
        """The service's circuit breakers and their ``limit`` latest transitions (``GET /v1/operator/breakers``)."""
        return self._operator(f"breakers?limit={int(limit)}", method="GET")

    @property
    def providers(self) -> list[str]:
        if self._providers is None:
            self.seed()  # changes nothing on a seeded database; answers the provider names
        assert self._providers is not None
        return self._providers

    def now(self) -> datetime:
        return self.clock.now()

    def connect(self, api_key: str) -> HttpTenantClient:
        """A client of the running service: one is started again if it stopped (idle) since the last login."""
        self.info = ensure_service(self.db)
        self.url = self.info.url
        return connect(self.url, api_key, clock=self.clock)

    def close(self) -> None:
        """Nothing to release: the service stays for the other kernels (``vbgateway service stop`` stops it)."""


@dataclass
class Workbench:
    """What the panels talk to (the local service, or a gateway opened here) and a key that logs in to it."""

    gateway: Gateway | LocalService
    api_key: str
    seeded: bool

    def close(self) -> None:
        """Release what this notebook holds (an embedded gateway releases the database; the service stays)."""
        self.gateway.close()


def _demo_key(service: LocalService, db: str | Path, tenant: str) -> str:
    """The demo key kept next to the database, minted (once) when there is none or it no longer works."""
    path = demo_key_path(db)
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        if kept.get("tenant") == tenant:
            service.connect(kept["apiKey"]).close()
            return str(kept["apiKey"])
    except (OSError, ValueError, KeyError, TypeError, AuthenticationError):
        pass
    key = service.mint_key(tenant)
    write_private(path, json.dumps({"tenant": tenant, "apiKey": key}))
    return key


def open_workbench(db_path: str | Path, api_key: str | None = None, *, tenant: str = DEFAULT_TENANT,
                   service: bool | None = None, **gateway_options: Any) -> Workbench:
    """Reach ``db_path`` (creating and seeding it when empty) and return a usable key.

    ``service`` (default: unless gateway options are given or the database is
    ``":memory:"``) goes through the database's local service, started if none
    runs; otherwise the database is opened in this process.
    """
    if service is None:
        service = not gateway_options and str(db_path) != ":memory:"
    if service:
        local = LocalService(db_path, ensure_service(db_path), operator_secret(db_path) or "")
        seeded = local.seed()
        return Workbench(local, api_key or _demo_key(local, db_path, tenant), seeded)
    if str(db_path) != ":memory:":
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    gateway = Gateway.open(db_path, **gateway_options)
    seeded = False
    if not gateway.list_tenants():
        result = seed_demo(gateway)
        seeded = True
        if api_key is None and tenant in result.api_keys:
            api_key = result.api_keys[tenant]
    if api_key is None:
        tenants = gateway.list_tenants()
        chosen = next((t for t in tenants if t.name == tenant), tenants[0])
        _, api_key = gateway.create_api_key(chosen.id)
    return Workbench(gateway, api_key, seeded)

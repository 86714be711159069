"""Open the notebooks' database: create it, seed it when empty, and find a key to log in with.

Notebooks take a database path and an optional API key from their papermill
``parameters`` cell. With no key, a fresh key is minted for a demo tenant
(keys are only ever shown once, so an earlier one cannot be looked up): that
way every notebook runs top to bottom on a fresh checkout and in CI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..gateway import Gateway
from ..seed import seed_demo

__all__ = ["DEFAULT_TENANT", "Workbench", "open_workbench"]

DEFAULT_TENANT = "Acme Corporation"


@dataclass
class Workbench:
    """An open gateway and a key that logs in to it."""

    gateway: Gateway
    api_key: str
    seeded: bool

    def close(self) -> None:
        """Release the database so another notebook (kernel) can open it."""
        self.gateway.close()


def open_workbench(db_path: str | Path, api_key: str | None = None, *, tenant: str = DEFAULT_TENANT,
                   **gateway_options: Any) -> Workbench:
    """Open (or create) ``db_path``, seed the demo tenants if it has none, and return a usable key."""
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

"""Adding, repricing, listing and removing configured providers on a gateway (``vbgateway providers``).

Operator acts on the control plane: each checks everything first and then
writes in one transaction, so bad input changes nothing. The gateway they
are given uses the change at once (its providers and its price table);
another process serving the same database sees it when it next opens it
(while one serves, the database is its own: the CLI gets DATABASE_BUSY).

A provider in use by an agent cannot be removed: the refusal names the
agents. vendorA and vendorB are built in; their prices can gain versions,
but they cannot be removed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from ..errors import GatewayError, NotFoundError, ValidationError
from ..pricing import BEGINNING, Rates
from ..store.tables import PriceVersionRow, ProviderRow
from .registry import (
    BUILT_IN,
    KINDS,
    build_provider,
    check_api_key_env,
    check_base_url,
    check_model,
    check_name,
)

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["ProviderInfo", "add_provider", "list_providers", "remove_provider", "set_prices", "usd"]


def usd(value: Decimal) -> str:
    """An exact amount as plain text without trailing zeros (2, 0.15), never in exponent form."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class ProviderInfo:
    """A provider as an operator sees it: never its key, only where the key is read and whether it is set."""

    name: str
    kind: str  # "built-in", "in code" (given to the gateway by a program) or a configured kind ("openai")
    base_url: str | None
    model: str | None
    api_key_env: str | None
    api_key_set: bool | None
    rates: Rates  # in effect now
    versions: tuple[Rates, ...]
    agents: int  # agents naming it (primary or fallback)

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "baseUrl": self.base_url, "model": self.model,
                "apiKeyEnv": self.api_key_env, "apiKeySet": self.api_key_set,
                "usdPer1mInput": usd(self.rates.usd_per_1m_input),
                "usdPer1mOutput": usd(self.rates.usd_per_1m_output),
                "priceVersions": [{"effectiveFrom": None if r.effective_from == BEGINNING else r.effective_from.isoformat(),
                                   "usdPer1mInput": usd(r.usd_per_1m_input),
                                   "usdPer1mOutput": usd(r.usd_per_1m_output)} for r in self.versions],
                "agents": self.agents}


def _kind(kind: object) -> str:
    if kind not in KINDS:
        raise ValidationError(f"a provider's kind is one of: {', '.join(KINDS)}",
                              details={"errors": [{"field": "kind", "message": "unknown kind"}]})
    return str(kind)


def add_provider(gw: Gateway, name: str, *, kind: str = "openai", base_url: str, model: str,
                 api_key_env: str | None, usd_per_1m_input: object, usd_per_1m_output: object,
                 environ: Mapping[str, str] | None = None) -> ProviderInfo:
    """Store a provider and its first prices (in effect from the start); the gateway can use it at once."""
    name = check_name(name)
    row = ProviderRow(name, _kind(kind), check_base_url(base_url), check_model(model), check_api_key_env(api_key_env),
                      gw.clock.now())
    rates = Rates.of(usd_per_1m_input, usd_per_1m_output, BEGINNING, provider=name)
    if name in gw.providers or name in BUILT_IN or any(r.name == name for r in gw.store.provider_rows()):
        raise GatewayError(f"a provider named {name!r} already exists", code="PROVIDER_EXISTS", http_status=409,
                           details={"provider": name})
    provider = build_provider(row, environ)
    gw.store.insert_provider(row, _price_row(name, rates, gw.clock.now()))
    gw.providers[name] = provider.bind(gw.clock)
    gw.prices.add_versions(name, [rates])
    return _info(gw, name)


def set_prices(gw: Gateway, name: str, usd_per_1m_input: object, usd_per_1m_output: object,
               effective_from: datetime | None = None) -> Rates:
    """A new version of a provider's prices, in effect from ``effective_from`` (default: now)."""
    _known(gw, name)
    when = effective_from or gw.clock.now()
    if when.tzinfo is None:
        raise ValidationError("an effective time needs its time zone (e.g. 2026-05-01T00:00:00Z)",
                              details={"errors": [{"field": "effective_from", "message": "no time zone"}]})
    if when <= BEGINNING:
        raise ValidationError("a new price takes effect after 1970-01-01",
                              details={"errors": [{"field": "effective_from", "message": "too early"}]})
    rates = Rates.of(usd_per_1m_input, usd_per_1m_output, when, provider=name)
    if any(r.effective_from == rates.effective_from for r in gw.prices.versions(name)):
        raise ValidationError(f"{name} already has a price taking effect at {when.isoformat()}",
                              details={"errors": [{"field": "effective_from", "message": "taken"}]})
    gw.store.insert_price_version(_price_row(name, rates, gw.clock.now()))
    gw.prices.add_versions(name, [rates])
    return rates


def remove_provider(gw: Gateway, name: str) -> None:
    """Remove a configured provider and its prices; refused while an agent names it, and for vendorA/vendorB."""
    _known(gw, name)
    if name in BUILT_IN or not any(r.name == name for r in gw.store.provider_rows()):
        raise ValidationError(f"{name} is built in, not configured: it cannot be removed",
                              details={"provider": name})
    agents = gw.store.agents_naming_provider(name)
    if agents:
        shown = ", ".join(agent for _, agent in agents[:5]) + (" and more" if len(agents) > 5 else "")
        raise GatewayError(f"{name} is in use by {len(agents)} agent(s) ({shown}); point them at another provider "
                           "first", code="PROVIDER_IN_USE", http_status=409,
                           details={"provider": name, "agents": [agent for _, agent in agents]})
    gw.store.delete_provider(name)
    gw.providers.pop(name, None)


def list_providers(gw: Gateway, environ: Mapping[str, str] | None = None) -> list[ProviderInfo]:
    """Every provider agents may name, built in first, then the configured ones by name."""
    names = [n for n in BUILT_IN if n in gw.providers] + [n for n in sorted(gw.providers) if n not in BUILT_IN]
    return [_info(gw, name, environ) for name in names]


def _known(gw: Gateway, name: object) -> None:
    if not isinstance(name, str) or name not in gw.providers:
        raise NotFoundError(f"no provider named {str(name)[:64]!r}; `vbgateway providers list` shows them",
                            code="PROVIDER_NOT_FOUND", details={"provider": str(name)[:64]})


def _price_row(name: str, rates: Rates, now: datetime) -> PriceVersionRow:
    return PriceVersionRow(name, rates.effective_from, rates.usd_per_1m_input, rates.usd_per_1m_output, now)


def _info(gw: Gateway, name: str, environ: Mapping[str, str] | None = None) -> ProviderInfo:
    row = next((r for r in gw.store.provider_rows() if r.name == name), None)
    env = os.environ if environ is None else environ
    agents = len(gw.store.agents_naming_provider(name))
    rates = gw.prices.rates_at(name, gw.clock.now())
    versions = gw.prices.versions(name)
    if row is None:
        kind = "built-in" if name in BUILT_IN else "in code"
        return ProviderInfo(name, kind, None, None, None, None, rates, versions, agents)
    key_set = None if row.api_key_env is None else bool(env.get(row.api_key_env))
    return ProviderInfo(name, row.kind, row.base_url, row.model, row.api_key_env, key_set, rates, versions, agents)

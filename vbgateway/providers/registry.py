"""Providers as configured data: what a stored provider must look like, and how a gateway loads them.

vendorA and vendorB are code (``default_providers``); every other provider
is a row of ``providers`` (``vbgateway providers add``) with its prices in
``price_versions``. ``install`` is what a gateway runs as it opens: it adds
the configured providers to the ones it was given (a name given in code
wins), adds every stored price version to its price table, and refuses a
provider without a price.

The checks here are the rules of a stored provider: a name agents can
write (a letter, then letters, digits, ``.``, ``_`` or ``-``; not
``none``), an ``http(s)`` base URL without credentials in it, a model name,
and the name of an environment variable, never a key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import ValidationError
from ..pricing import BEGINNING, PriceTable, Rates
from .base import Provider

if TYPE_CHECKING:
    from ..store import Store
    from ..store.tables import PriceVersionRow, ProviderRow

__all__ = [
    "BUILT_IN",
    "KINDS",
    "MAX_MODEL_CHARS",
    "PROVIDER_NAME",
    "build_provider",
    "check_api_key_env",
    "check_base_url",
    "check_model",
    "check_name",
    "install",
    "rates_of",
]

KINDS = ("openai",)  # any OpenAI-style chat completions service
BUILT_IN = ("vendorA", "vendorB")
PROVIDER_NAME = r"^[A-Za-z][A-Za-z0-9._-]{0,63}$"  # what agents write in primaryProvider / fallbackProvider
MAX_MODEL_CHARS = 200
_NAME = re.compile(PROVIDER_NAME)
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_RESERVED = {"none"}  # means "no fallback" in an agent


def _invalid(field: str, message: str) -> ValidationError:
    return ValidationError(message, details={"errors": [{"field": field, "message": message}]})


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _invalid("name", "a provider name is a letter, then up to 63 letters, digits, '.', '_' or '-'")
    if name.lower() in _RESERVED:
        raise _invalid("name", f"{name!r} is reserved (an agent's fallbackProvider 'none' means no fallback)")
    return name


def check_base_url(url: object) -> str:
    """An http(s) URL with a host and no credentials, query or fragment; without its trailing ``/``."""
    if not isinstance(url, str) or not url.strip() or len(url) > 2000:
        raise _invalid("base_url", "a base URL is an http:// or https:// URL")
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # a port that is not a number raises here
    except ValueError as exc:
        raise _invalid("base_url", f"not a usable URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid("base_url", "a base URL is an http:// or https:// URL with a host, e.g. https://api.openai.com/v1")
    if parts.username is not None or parts.password is not None:
        raise _invalid("base_url", "no credentials in the URL: the key goes in an environment variable (--api-key-env)")
    if parts.query or parts.fragment:
        raise _invalid("base_url", "a base URL has no query or fragment")
    del port
    return url.strip().rstrip("/")


def check_model(model: object) -> str:
    if not isinstance(model, str) or not model.strip() or len(model) > MAX_MODEL_CHARS or not model.isprintable() \
            or model != model.strip():
        raise _invalid("model", f"a model name is 1-{MAX_MODEL_CHARS} printable characters, no surrounding spaces")
    return model


def check_api_key_env(variable: object) -> str | None:
    """The name of the environment variable holding the key (or None: the service needs none)."""
    if variable is None:
        return None
    if not isinstance(variable, str) or not _ENV.fullmatch(variable):
        raise _invalid("api_key_env", "the API key is named by an environment variable (letters, digits, '_'), "
                                      "never given itself")
    return variable


def rates_of(row: PriceVersionRow) -> Rates:
    return Rates(row.usd_per_1m_input, row.usd_per_1m_output, _utc(row.effective_from))


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def build_provider(row: ProviderRow, environ: Mapping[str, str] | None = None) -> Provider:
    """The provider a stored row describes (the HTTP client is loaded only when one exists)."""
    if row.kind == "openai":
        from .openai import OpenAICompatible

        return OpenAICompatible(row.name, row.base_url, row.model, row.api_key_env, environ=environ)
    raise ValidationError(f"provider {row.name!r} is of a kind this vbgateway does not know ({row.kind!r})",
                          details={"provider": row.name, "kind": row.kind})


def install(store: Store, providers: MutableMapping[str, Provider], prices: PriceTable,
            environ: Mapping[str, str] | None = None) -> PriceTable:
    """Add the stored providers and price versions (and the prices providers carry); check every provider is priced.

    Returns the gateway's price table: ``prices`` plus every version found.
    """
    for row in store.provider_rows():
        if row.name not in providers:
            providers[row.name] = build_provider(row, environ)
    versions: dict[str, list[Rates]] = {}
    for name, provider in providers.items():
        carried: Any = getattr(provider, "prices", None)
        if isinstance(carried, Rates) and name not in prices.providers:
            versions.setdefault(name, []).append(carried)
    for price in store.price_version_rows():
        versions.setdefault(price.provider, []).append(rates_of(price))
    table = prices.with_versions(versions) if versions else prices
    missing = [name for name in providers if name not in table.providers]
    if missing:
        raise ValidationError(f"no price for provider(s) {', '.join(missing)}")
    late = [name for name in providers if table.versions(name)[0].effective_from != BEGINNING]
    if late:
        raise ValidationError(f"the first price of provider(s) {', '.join(late)} must apply from the start "
                              "(give it no effective time): every reply must find a price")
    return table

"""Per-token prices and the cost of a reply, in exact decimals.

Money never passes through a float on its way to the database: prices are
``Decimal`` (parsed from strings), costs are computed with integer token
counts, and the result is exact at ``COST_PLACES`` decimal places. Prices are
limited to ``PRICE_PLACES`` places so that no division ever rounds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal

from .errors import ValidationError

__all__ = ["COST_PLACES", "DEFAULT_PRICES", "PRICE_PLACES", "PriceTable"]

PRICE_PLACES = 7  # USD per 1,000 tokens
COST_PLACES = 10  # tokens / 1000 * price: 3 more places than the price
_COST_QUANTUM = Decimal(1).scaleb(-COST_PLACES)

DEFAULT_PRICES: dict[str, Decimal] = {"vendorA": Decimal("0.002"), "vendorB": Decimal("0.003")}


class PriceTable:
    """USD per 1,000 tokens (input and output alike), per provider."""

    def __init__(self, prices: Mapping[str, Decimal | str | int] | None = None) -> None:
        source = DEFAULT_PRICES if prices is None else prices
        table: dict[str, Decimal] = {}
        for provider, raw in source.items():
            if isinstance(raw, float):
                raise ValidationError(
                    "prices must be given as strings or Decimals, not floats",
                    details={"provider": provider, "value": repr(raw)},
                )
            price = Decimal(str(raw))
            if not price.is_finite() or price < 0:
                raise ValidationError("a price must be a finite, non-negative number", details={"provider": provider})
            if -price.as_tuple().exponent > PRICE_PLACES:  # type: ignore[operator]
                raise ValidationError(
                    f"a price may have at most {PRICE_PLACES} decimal places", details={"provider": provider}
                )
            table[provider] = price
        self._prices = table

    @property
    def providers(self) -> list[str]:
        return sorted(self._prices)

    def price_per_1k(self, provider: str) -> Decimal:
        try:
            return self._prices[provider]
        except KeyError:
            raise ValidationError(f"no price for provider {provider!r}", details={"provider": provider}) from None

    def cost(self, provider: str, tokens_in: int, tokens_out: int) -> Decimal:
        """Exact cost: (tokens_in + tokens_out) / 1000 x price."""
        return (Decimal(tokens_in + tokens_out) * self.price_per_1k(provider) / 1000).quantize(_COST_QUANTUM)

    def as_dict(self) -> dict[str, Decimal]:
        return dict(self._prices)

    def digest(self) -> str:
        """A stable hash of the table, printed on invoices so they can be reproduced."""
        canonical = json.dumps({k: str(v.normalize()) for k, v in sorted(self._prices.items())}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"PriceTable({ {k: str(v) for k, v in self._prices.items()} })"

"""Prices per provider, input and output apart, versioned by the time they take effect; costs in exact decimals.

Money never passes through a float on its way to the database: rates are
``Decimal`` (parsed from strings), costs are computed with integer token
counts, and the result is exact at ``COST_PLACES`` decimal places. A rate
is USD per 1,000,000 tokens with at most ``RATE_PLACES`` places (the same
precision as the original USD per 1,000 tokens with ``PRICE_PLACES``), so
that no division ever rounds.

A provider's prices are a list of ``Rates``, each in effect from its
``effective_from`` until the next one's: a reply is billed at the rates in
effect when it is billed. vendorA and vendorB keep their single rate (the
contract's USD per 1,000 tokens, input and output alike), given as before:
``PriceTable({"vendorA": "0.002"})`` is one version, in effect from the
beginning, with equal input and output rates.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .errors import ValidationError
from .models import Pricing

__all__ = ["BEGINNING", "COST_PLACES", "DEFAULT_PRICES", "PRICE_PLACES", "RATE_PLACES", "PriceTable", "Rates",
           "parse_rate"]

PRICE_PLACES = 7  # USD per 1,000 tokens
RATE_PLACES = PRICE_PLACES - 3  # USD per 1,000,000 tokens: the same precision
COST_PLACES = 10  # tokens / 1,000,000 x rate: 6 more places than the rate
_COST_QUANTUM = Decimal(1).scaleb(-COST_PLACES)
_MILLION = Decimal(1_000_000)
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)  # the effective time of prices given without one

DEFAULT_PRICES: dict[str, Decimal] = {"vendorA": Decimal("0.002"), "vendorB": Decimal("0.003")}


def _decimal(raw: object, what: str, places: int, provider: str) -> Decimal:
    if isinstance(raw, float):
        raise ValidationError("prices must be given as strings or Decimals, not floats",
                              details={"provider": provider, "value": repr(raw)})
    if isinstance(raw, bool) or not isinstance(raw, (str, int, Decimal)):
        raise ValidationError(f"{what} must be a number written as a string", details={"provider": provider})
    try:
        value = Decimal(str(raw).strip())
    except ArithmeticError:
        raise ValidationError(f"{what} is not a number: {str(raw)[:40]!r}", details={"provider": provider}) from None
    if not value.is_finite() or value < 0:
        raise ValidationError(f"{what} must be a finite, non-negative number", details={"provider": provider})
    if -value.as_tuple().exponent > places:  # type: ignore[operator]
        raise ValidationError(f"{what} may have at most {places} decimal places", details={"provider": provider})
    return value


def parse_rate(raw: object, what: str = "a rate", provider: str = "") -> Decimal:
    """A USD-per-1M-tokens rate as the exact ``Decimal`` it is, or VALIDATION_ERROR saying what is wrong."""
    return _decimal(raw, what, RATE_PLACES, provider)


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per 1,000,000 input and output tokens, in effect from ``effective_from``.

    ``usd_per_1k_tokens`` is the single rate of the contract: for equal
    input and output rates exactly that rate per 1,000 tokens; for a
    provider priced apart, the higher of the two (an upper bound on what a
    token costs, which is what a reservation needs). The rates billed are
    always the two per-1M ones; a reply and its usage event name them only
    when they differ (equal, both are ``usd_per_1k_tokens`` x 1000).
    """

    usd_per_1m_input: Decimal
    usd_per_1m_output: Decimal
    effective_from: datetime = BEGINNING
    usd_per_1k_tokens: Decimal = field(default=Decimal(0), compare=False)
    # A reply's ``usage.pricing`` (the per-1M rates only when they differ): one frozen model shared by every
    # reply billed at these rates, which its validation takes as it is instead of building it again.
    pricing: Pricing = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.effective_from.tzinfo is None:
            raise ValidationError("a price's effective time must be timezone-aware (UTC)")
        if not self.usd_per_1k_tokens:
            single = max(self.usd_per_1m_input, self.usd_per_1m_output) / 1000
            object.__setattr__(self, "usd_per_1k_tokens", single)
        pricing = {"usd_per_1k_tokens": self.usd_per_1k_tokens}
        if not self.single:
            pricing.update(usd_per_1m_input=self.usd_per_1m_input, usd_per_1m_output=self.usd_per_1m_output)
        object.__setattr__(self, "pricing", Pricing.model_validate(pricing))

    @classmethod
    def of(cls, usd_per_1m_input: object, usd_per_1m_output: object, effective_from: datetime = BEGINNING, *,
           provider: str = "") -> Rates:
        """Rates from text or ``Decimal`` values, validated (no floats, at most ``RATE_PLACES`` places)."""
        return cls(parse_rate(usd_per_1m_input, "the input rate", provider),
                   parse_rate(usd_per_1m_output, "the output rate", provider), effective_from)

    @classmethod
    def per_1k(cls, price: object, effective_from: datetime = BEGINNING, *, provider: str = "") -> Rates:
        """One rate for input and output alike, in USD per 1,000 tokens (the contract's form)."""
        value = _decimal(price, "a price", PRICE_PLACES, provider)
        per_1m = value * 1000
        return cls(per_1m, per_1m, effective_from, value)

    @property
    def single(self) -> bool:
        return self.usd_per_1m_input == self.usd_per_1m_output

    def cost(self, tokens_in: int, tokens_out: int) -> Decimal:
        """Exact cost: tokens_in x input rate + tokens_out x output rate, per 1,000,000 tokens."""
        if self.usd_per_1m_input == self.usd_per_1m_output:
            total = Decimal(tokens_in + tokens_out) * self.usd_per_1m_input
        else:
            total = Decimal(tokens_in) * self.usd_per_1m_input + Decimal(tokens_out) * self.usd_per_1m_output
        return (total / _MILLION).quantize(_COST_QUANTUM)


PriceSpec = Decimal | str | int | Rates | Sequence[Rates]


class PriceTable:
    """Per provider, its ``Rates`` over time; what a reply costs at the moment it is billed."""

    def __init__(self, prices: Mapping[str, PriceSpec] | None = None) -> None:
        source: Mapping[str, Any] = DEFAULT_PRICES if prices is None else prices
        table: dict[str, tuple[Rates, ...]] = {}
        for provider, spec in source.items():
            if isinstance(spec, Rates):
                versions: list[Rates] = [spec]
            elif isinstance(spec, (list, tuple)):
                versions = list(spec)
                if not versions or not all(isinstance(v, Rates) for v in versions):
                    raise ValidationError("a provider's price versions are a non-empty list of Rates",
                                          details={"provider": provider})
            else:
                versions = [Rates.per_1k(spec, provider=provider)]
            table[provider] = _ordered(provider, versions)
        self._versions = table
        self._starts = {provider: [v.effective_from for v in versions] for provider, versions in table.items()}
        self._only = {provider: versions[0] for provider, versions in table.items()
                      if len(versions) == 1 and versions[0].effective_from == BEGINNING}

    @property
    def providers(self) -> list[str]:
        return sorted(self._versions)

    def versions(self, provider: str) -> tuple[Rates, ...]:
        """Every version of a provider's prices, oldest first."""
        try:
            return self._versions[provider]
        except KeyError:
            raise ValidationError(f"no price for provider {provider!r}", details={"provider": provider}) from None

    def rates_at(self, provider: str, at: datetime | None = None) -> Rates:
        """The rates in effect at ``at``; without ``at``, the newest version (a scheduled one included)."""
        only = self._only.get(provider)  # the usual case, on every reply: one version, in effect from the start
        if only is not None:
            return only
        versions = self.versions(provider)
        if at is None:
            return versions[-1]
        index = bisect.bisect_right(self._starts[provider], at) - 1
        if index < 0:
            raise ValidationError(f"no price for provider {provider!r} in effect at {at.isoformat()}",
                                  details={"provider": provider})
        return versions[index]

    def price_per_1k(self, provider: str, at: datetime | None = None) -> Decimal:
        """The single USD-per-1,000-tokens rate (``Rates.usd_per_1k_tokens``) in effect at ``at``."""
        return self.rates_at(provider, at).usd_per_1k_tokens

    def cost(self, provider: str, tokens_in: int, tokens_out: int, at: datetime | None = None) -> Decimal:
        """Exact cost of a reply at the rates in effect at ``at`` (default: the newest rates)."""
        return self.rates_at(provider, at).cost(tokens_in, tokens_out)

    def add_versions(self, provider: str, versions: Sequence[Rates]) -> None:
        """More versions of one provider's prices, in place: the gateway's table as an operator changes prices."""
        merged = self.with_versions({provider: versions})
        self._versions, self._starts, self._only = merged._versions, merged._starts, merged._only

    def with_versions(self, extra: Mapping[str, Sequence[Rates]]) -> PriceTable:
        """This table plus more versions (a version at an effective time already present replaces it)."""
        merged: dict[str, list[Rates]] = {p: list(v) for p, v in self._versions.items()}
        for provider, versions in extra.items():
            kept = {v.effective_from: v for v in merged.get(provider, [])}
            kept.update({v.effective_from: v for v in versions})
            merged[provider] = list(kept.values())
        return PriceTable({p: v for p, v in merged.items() if v})

    def as_dict(self) -> dict[str, Decimal]:
        """Each provider's newest single rate per 1,000 tokens (the contract's view)."""
        return {provider: versions[-1].usd_per_1k_tokens for provider, versions in self._versions.items()}

    def digest(self) -> str:
        """A stable hash of the table, printed on invoices so they can be reproduced.

        A table of single rates in effect from the beginning hashes as it did
        before prices had versions, so earlier invoices keep their digest.
        """
        if all(len(v) == 1 and v[0].single and v[0].effective_from == BEGINNING for v in self._versions.values()):
            canonical: dict[str, Any] = {k: str(v[0].usd_per_1k_tokens.normalize())
                                         for k, v in sorted(self._versions.items())}
        else:
            canonical = {k: [[r.effective_from.isoformat(), str(r.usd_per_1m_input.normalize()),
                              str(r.usd_per_1m_output.normalize())] for r in v]
                         for k, v in sorted(self._versions.items())}
        text = json.dumps(canonical, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        shown = {k: (str(v[0].usd_per_1k_tokens) if len(v) == 1 and v[0].single
                     else [f"{r.effective_from:%Y-%m-%d}: in {r.usd_per_1m_input} out {r.usd_per_1m_output} /1M"
                           for r in v])
                 for k, v in self._versions.items()}
        return f"PriceTable({shown})"


def _ordered(provider: str, versions: list[Rates]) -> tuple[Rates, ...]:
    ordered = sorted(versions, key=lambda r: r.effective_from)
    starts = [r.effective_from for r in ordered]
    if len(set(starts)) != len(starts):
        raise ValidationError("two price versions of one provider take effect at the same time",
                              details={"provider": provider})
    return tuple(ordered)

"""What to generate and what was written: the two values every other part of ``synthetic`` passes around."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from ..errors import ValidationError

__all__ = ["SyntheticResult", "SyntheticSpec"]


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. ``weights`` skews volume between tenants (default: equal shares)."""

    events: int = 100_000
    tenants: int = 10
    start: date = date(2025, 1, 1)
    end: date = date(2025, 12, 31)
    agents_per_tenant: int = 3
    replies_per_session: int = 8
    voice_share: float = 0.1
    vendor_a_share: float = 0.6
    failure_rate: float = 0.1
    attempts: bool = True
    weights: Sequence[float] | None = None
    seed: int = 0
    tag: str = "syn"

    def validate(self) -> None:
        if self.events < 0 or self.tenants < 1 or self.agents_per_tenant < 1 or self.replies_per_session < 1:
            raise ValidationError("events >= 0, tenants, agents_per_tenant and replies_per_session >= 1")
        if self.start > self.end:
            raise ValidationError("'start' must not be after 'end'")
        if self.weights is not None and (len(self.weights) != self.tenants or min(self.weights) < 0
                                         or sum(self.weights) <= 0):
            raise ValidationError("weights: one non-negative number per tenant, not all zero")
        if not 0 <= self.failure_rate < 1:
            raise ValidationError("failure_rate is in [0, 1)")


@dataclass
class SyntheticResult:
    """What was written, with exact totals to check reports against."""

    tenant_ids: list[str]
    usage_rows: int = 0
    attempt_rows: int = 0
    cost_usd: Decimal = Decimal(0)
    per_tenant: dict[str, tuple[int, Decimal]] = field(default_factory=dict)

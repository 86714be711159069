"""What a simulation runs: one validated, self-contained ``Scenario`` value.

A scenario is data (YAML or JSON; examples in ``vbgateway/simulation/scenarios/``) so that the
platform team can review a proposed incident drill or retry policy like any
other change. Every field has a safe default: a scenario file only states
what it is about (an outage window, a storm, a policy). The gateway policy is
the gateway's own ``RetryPolicy``, so what was simulated is exactly what
ships. Bad files fail early with ``ScenarioError`` naming the field and the
fix, before any traffic is generated.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import ScenarioError
from ..governance.breaker import BreakerPolicy
from ..governance.rate_limits import MAX_PER_MINUTE
from ..models import DEFAULT_MAX_OUTPUT_TOKENS, MAX_OUTPUT_TOKENS_LIMIT
from ..providers import VendorA, VendorB, VendorProfile
from ..reliability import RetryPolicy
from .budgets import BudgetPlan
from .examples import example_path, looks_like_name

__all__ = [
    "KNOWN_VENDORS",
    "AgentPlan",
    "BudgetPlan",
    "DailyProfile",
    "Distribution",
    "Incident",
    "RateLimitPlan",
    "Scenario",
    "ScenarioError",
    "TenantPlan",
    "Traffic",
    "VendorSpec",
    "load_scenario",
    "parse_duration",
]

KNOWN_VENDORS: dict[str, VendorProfile] = {"vendorA": VendorA.default_profile, "vendorB": VendorB.default_profile}
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:w|d|h|min|m|s))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(w|d|h|min|m|s)")
_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "min": 60.0, "s": 1.0}


def parse_duration(value: Any) -> Any:
    """Accept ``"7d"``, ``"90m"``, ``"1.5h"``, ``"3h30m"`` besides what pydantic takes (seconds, ``P7D``)."""
    if isinstance(value, str):
        text = value.replace(" ", "")
        if _DURATION.match(text):
            return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in _PART.findall(text)))
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Distribution(_Model):
    """A positive quantity drawn per item: ``fixed``, ``uniform``, ``exponential``,
    ``lognormal`` (spread = sigma) or ``poisson`` (min + Poisson(mean - min)); clipped to [min, max]."""

    mean: float = Field(gt=0)
    min: float = Field(default=0.0, ge=0)
    max: float = Field(default=1e9, gt=0)
    shape: Literal["fixed", "uniform", "exponential", "lognormal", "poisson"] = "lognormal"
    spread: float = Field(default=0.6, ge=0, le=3)

    @model_validator(mode="after")
    def _ordered(self) -> Distribution:
        if not self.min <= self.mean <= self.max:
            raise ValueError(f"need min <= mean <= max, got {self.min} / {self.mean} / {self.max}")
        return self


class DailyProfile(_Model):
    """How busy each hour is, relative to ``sessions_per_hour`` (the busy-hour rate).

    ``hourly`` (24 factors, UTC) overrides the busy/quiet shape when given.
    """

    busy_hours: tuple[int, int] = (9, 18)
    busy: float = Field(default=1.0, ge=0)
    shoulder: float = Field(default=0.45, ge=0, description="the hours around the busy ones")
    night: float = Field(default=0.08, ge=0, description="quiet nights, 23:00-06:00")
    weekend: float = Field(default=0.35, ge=0, description="multiplies every hour on Saturday and Sunday")
    hourly: tuple[float, ...] | None = None

    @field_validator("busy_hours")
    @classmethod
    def _hours(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 0 <= value[0] < value[1] <= 24:
            raise ValueError("busy_hours is [first, end) with 0 <= first < end <= 24")
        return value

    @field_validator("hourly")
    @classmethod
    def _day(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None and (len(value) != 24 or min(value) < 0):
            raise ValueError("hourly is 24 non-negative factors, one per UTC hour")
        return value

    def factor(self, when: datetime) -> float:
        """Traffic level at the hour containing ``when`` (UTC)."""
        hour = when.hour
        if self.hourly is not None:
            level = self.hourly[hour]
        elif self.busy_hours[0] <= hour < self.busy_hours[1]:
            level = self.busy
        elif hour >= 23 or hour < 6:
            level = self.night
        else:
            level = self.shoulder
        return level * (self.weekend if when.weekday() >= 5 else 1.0)


class Traffic(_Model):
    """Customer behaviour, the same for every tenant unless a tenant scales it."""

    sessions_per_hour: float = Field(default=20.0, ge=0, description="new sessions per tenant in a busy hour")
    daily_profile: DailyProfile = DailyProfile()
    messages_per_session: Distribution = Distribution(mean=4, min=1, max=30, shape="poisson")
    message_chars: Distribution = Distribution(mean=90, min=4, max=2000)
    think_time_s: Distribution = Distribution(mean=25, min=2, max=600, shape="exponential")
    voice_share: float = Field(default=0.1, ge=0, le=1)
    client_retry_share: float = Field(default=0.02, ge=0, le=1,
                                      description="messages the client sends twice with one idempotency key")
    client_retry_after_s: tuple[float, float] = (0.5, 4.0)
    idempotency_share: float = Field(default=0.0, ge=0, le=1, description="other messages sent with a key")

    @field_validator("client_retry_after_s")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] < 0 or value[1] < value[0]:
            raise ValueError("client_retry_after_s is [low, high] with 0 <= low <= high")
        return value


class AgentPlan(_Model):
    """An agent the simulated tenants use; an existing agent of that name is reused as it is."""

    name: str = Field(min_length=1, max_length=200)
    primary: str = "vendorA"
    fallback: str | None = "vendorB"
    prompt_chars: int = Field(default=300, ge=1, le=20_000)
    tools: tuple[str, ...] = ()
    share: float = Field(default=1.0, gt=0, description="relative share of the tenant's sessions")
    max_output_tokens: int = Field(default=DEFAULT_MAX_OUTPUT_TOKENS, ge=1, le=MAX_OUTPUT_TOKENS_LIMIT,
                                   description="the most tokens a reply holds; what a budget reserves for it")

    @model_validator(mode="after")
    def _vendors(self) -> AgentPlan:
        for role, vendor in (("primary", self.primary), ("fallback", self.fallback)):
            if vendor is not None and vendor not in KNOWN_VENDORS:
                raise ValueError(f"unknown vendor {vendor!r} as {role}; known: {', '.join(sorted(KNOWN_VENDORS))}")
        if self.fallback == self.primary:
            raise ValueError("the fallback vendor must differ from the primary")
        return self


DEFAULT_AGENTS = (AgentPlan(name="Support", primary="vendorA", fallback="vendorB", share=0.7),
                  AgentPlan(name="Sales", primary="vendorB", fallback="vendorA", prompt_chars=180, share=0.3))


class RateLimitPlan(_Model):
    """A tenant's rate limit (``Gateway.set_rate_limit``): None for no limit of that kind."""

    requests_per_minute: int | None = Field(default=None, ge=1, le=MAX_PER_MINUTE)
    tokens_per_minute: int | None = Field(default=None, ge=1, le=MAX_PER_MINUTE)


class TenantPlan(_Model):
    """A tenant: created unless one of that name exists (then it and its agents are reused).

    ``rate_limit`` (else the scenario's) is set on the tenant; refused sends fail for the customer.
    ``budget`` (``{monthly_usd: 50, alert_at: [0.5, 0.8, 1.0]}``) is set on
    the tenant before the run; the gateway instances share it (budgets.py).
    """

    name: str = Field(min_length=1, max_length=200)
    agents: tuple[AgentPlan, ...] = ()
    scale: float = Field(default=1.0, ge=0, description="multiplies the traffic's sessions_per_hour")
    rate_limit: RateLimitPlan | None = None
    budget: BudgetPlan | None = None


class VendorSpec(_Model):
    """A vendor's normal behaviour (VendorProfile's fields; unset ones keep the vendor's defaults)."""

    failure_rate: float | None = Field(default=None, ge=0, le=1)
    rate_limit_rate: float | None = Field(default=None, ge=0, le=1)
    retry_after_ms: tuple[int, int] | None = None
    latency_ms: tuple[float, float] | None = None
    spike_rate: float | None = Field(default=None, ge=0, le=1)
    spike_factor: float | None = Field(default=None, ge=1)

    def apply(self, base: VendorProfile) -> VendorProfile:
        changes = {k: v for k, v in self.model_dump().items() if v is not None}
        return VendorProfile(**{**base.__dict__, **changes})


class Incident(_Model):
    """A time window in which a vendor behaves differently.

    ``start``/``end`` are instants, or offsets from the scenario start
    (``"P2DT14H"``, ``"62h"``). Kinds: ``outage`` (every call fails, HTTP 5xx),
    ``rate_limit_storm`` (``rate`` of calls answer 429), ``latency``
    (latencies x ``factor``), ``custom`` (the ``profile`` fields).
    """

    vendor: str
    kind: Literal["outage", "rate_limit_storm", "latency", "custom"]
    start: datetime | timedelta
    end: datetime | timedelta
    rate: float = Field(default=0.8, ge=0, le=1)
    factor: float = Field(default=5.0, ge=1)
    profile: VendorSpec = VendorSpec()
    label: str = ""

    _durations = field_validator("start", "end", mode="before")(classmethod(lambda cls, v: parse_duration(v)))

    @field_validator("vendor")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in KNOWN_VENDORS:
            raise ValueError(f"unknown vendor {value!r}; known: {', '.join(sorted(KNOWN_VENDORS))}")
        return value

    def window(self, scenario_start: datetime) -> tuple[datetime, datetime]:
        def at(value: datetime | timedelta) -> datetime:
            return scenario_start + value if isinstance(value, timedelta) else value.astimezone(UTC)
        return at(self.start), at(self.end)

    def apply(self, profile: VendorProfile) -> VendorProfile:
        """The vendor's profile while this incident lasts."""
        fields = dict(profile.__dict__)
        if self.kind == "outage":
            fields.update(failure_rate=1.0, rate_limit_rate=0.0)
        elif self.kind == "rate_limit_storm":
            fields.update(rate_limit_rate=self.rate, failure_rate=min(fields["failure_rate"], 1.0 - self.rate))
        elif self.kind == "latency":
            low, high = fields["latency_ms"]
            fields.update(latency_ms=(low * self.factor, high * self.factor))
        else:
            return self.profile.apply(profile)
        return VendorProfile(**fields)


class Scenario(_Model):
    """Start, duration, tenants and agents, traffic, vendors, incidents, policy and seed."""

    name: str = "scenario"
    description: str = ""
    start: datetime = datetime(2026, 3, 2, tzinfo=UTC)
    duration: timedelta = timedelta(days=1)
    end: datetime | None = Field(default=None, description="alternative to duration")
    seed: int = 42
    tenants: int | tuple[TenantPlan, ...] = 2
    agents: tuple[AgentPlan, ...] = DEFAULT_AGENTS
    traffic: Traffic = Traffic()
    vendors: dict[str, VendorSpec] = {}
    incidents: tuple[Incident, ...] = ()
    policy: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy | None = Field(default=None, description="a circuit breaker per provider; each gateway "
                                          "instance has its own, as each gateway process does")
    prices: dict[str, str] | None = None
    rate_limit: RateLimitPlan | None = Field(default=None, description="every tenant's, unless a tenant has its own")
    gateways: int = Field(default=2, ge=1, le=64,
                          description="gateway instances sharing the traffic, sessions spread round-robin; each has "
                                      "its own retry jitter, ids and vendor draws (large runs use one process each)")

    _parse_duration = field_validator("duration", mode="before")(classmethod(lambda cls, v: parse_duration(v)))

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("give a timezone, e.g. 2026-03-02T00:00:00Z")
        return value.astimezone(UTC)

    @field_validator("tenants")
    @classmethod
    def _tenant_count(cls, value: int | tuple[TenantPlan, ...]) -> int | tuple[TenantPlan, ...]:
        if isinstance(value, int) and not 1 <= value <= 10_000:
            raise ValueError("tenants is a count from 1 to 10000, or a list of tenants")
        if not isinstance(value, int) and not value:
            raise ValueError("tenants must not be an empty list")
        return value

    @field_validator("vendors")
    @classmethod
    def _vendor_names(cls, value: dict[str, VendorSpec]) -> dict[str, VendorSpec]:
        unknown = sorted(set(value) - set(KNOWN_VENDORS))
        if unknown:
            raise ValueError(f"unknown vendor(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_VENDORS))}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if self.end is not None:
            if self.end <= self.start:
                raise ValueError(f"end ({self.end.isoformat()}) must be after start ({self.start.isoformat()})")
            object.__setattr__(self, "duration", self.end - self.start)
        if self.duration <= timedelta(0):
            raise ValueError("duration must be positive")
        stop = self.start + self.duration
        for i, incident in enumerate(self.incidents):
            first, last = incident.window(self.start)
            if last <= first:
                raise ValueError(f"incidents[{i}] ({incident.kind} of {incident.vendor}) ends before it starts")
            if last <= self.start or first >= stop:
                raise ValueError(f"incidents[{i}] ({incident.kind} of {incident.vendor}) lies outside the scenario")
        return self

    # ---------------------------------------------------------------- derived views
    @property
    def stop(self) -> datetime:
        return self.start + self.duration

    def tenant_plans(self) -> list[TenantPlan]:
        """Explicit tenants (agents defaulting to the scenario's), or ``tenants`` generated ones."""
        if isinstance(self.tenants, int):
            return [TenantPlan(name=f"Sim Tenant {i + 1:02d}", agents=self.agents, rate_limit=self.rate_limit)
                    for i in range(self.tenants)]
        return [t.model_copy(update={"agents": t.agents or self.agents, "rate_limit": t.rate_limit or self.rate_limit})
                for t in self.tenants]

    def vendor_profiles(self) -> dict[str, VendorProfile]:
        """Every known vendor's normal profile: its defaults, then the scenario's changes."""
        return {name: self.vendors[name].apply(base) if name in self.vendors else base
                for name, base in KNOWN_VENDORS.items()}

    def expected_messages(self) -> float:
        """About how many customer messages the traffic holds (the mean of its random draws)."""
        traffic, hours = self.traffic, int(self.duration.total_seconds() // 3600) + 1
        scale = sum(plan.scale for plan in self.tenant_plans())
        load = sum(traffic.daily_profile.factor(self.start + timedelta(hours=h)) for h in range(hours))
        return traffic.sessions_per_hour * scale * load * traffic.messages_per_session.mean

    def with_policy(self, policy: RetryPolicy) -> Scenario:
        return self.model_copy(update={"policy": policy})

    @classmethod
    def parse(cls, data: Any, source: str = "scenario") -> Scenario:
        """Validate a mapping; errors become one ``ScenarioError`` listing each bad field."""
        if not isinstance(data, dict):
            raise ScenarioError(f"{source}: a scenario is a mapping of fields, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except pydantic.ValidationError as exc:
            errors = [{"field": ".".join(str(p) for p in e["loc"]) or "scenario",
                       "message": e["msg"].removeprefix("Value error, ")} for e in exc.errors()]
            lines = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
            raise ScenarioError(f"{source}: invalid scenario ({lines})", details={"errors": errors}) from None


def load_scenario(source: str | Path | dict[str, Any] | Scenario) -> Scenario:
    """A Scenario from a YAML or JSON file, an example's name (``"normal_week"``), a mapping, or a Scenario."""
    if isinstance(source, Scenario):
        return source
    if isinstance(source, dict):
        return Scenario.parse(source)
    path = example_path(source) if isinstance(source, str) and looks_like_name(source) else Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc.strerror or exc}", details={"path": str(path)}) from exc
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml and json each raise their own family
        raise ScenarioError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {exc}",
                            details={"path": str(path)}) from exc
    return Scenario.parse(data, source=str(path))

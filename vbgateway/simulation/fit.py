"""``fit_scenario``: a scenario file that reproduces the traffic a database recorded.

Read from the tables (``docs/simulation.md``, "Fitting a scenario"):

- tenants (by name) with their share of the sessions (``scale``), and each
  tenant's agents as stored (vendors, prompt length, tools) with their share;
- arrivals: sessions per hour of the day on weekdays, normalised to the
  busiest hour (``daily_profile.hourly``), and the weekend's level against
  the weekdays' (``weekend``): the hour-of-week pattern as the scenario
  format holds it; ``sessions_per_hour`` is the busiest weekday hour per tenant;
- session length (customer messages per session: tries are grouped by
  request, so failed messages count too), message size (chat messages;
  voice messages are transcripts of the simulator's clips), think time
  (from the end of one message's last try to the next message);
- voice share; client retry share (messages sent with an idempotency key:
  a client's resend of one is answered from the store and leaves no row, so
  keyed messages are the trace retries leave);
- per vendor: outcome rates, latency and ``Retry-After`` spread, and
  incidents found as change points (``fit_vendors.py``); prices as billed.

The result is an ordinary ``Scenario``: ``scenario_yaml`` writes it as a file
a person can read and edit, and ``load_scenario`` reads it back.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ScenarioError, ValidationError
from .fit_vendors import FoundIncident, VendorFit, find_incidents, fit_vendor, merge_window
from .scenario import KNOWN_VENDORS, Scenario

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["fit_scenario", "open_source", "scenario_yaml"]


@contextmanager
def open_source(source: str | Path | Gateway) -> Iterator[Gateway]:
    """A gateway to read: the one given, or a read-only one on a database file, a lake or an export folder."""
    from ..gateway import Gateway
    from ..lake import open_source as open_stored

    if isinstance(source, Gateway):
        yield source
        return
    with open_stored(source) as gw:
        yield gw


def _instant(value: object, field: str) -> datetime:
    """A UTC instant from a datetime, a date (its midnight) or an ISO string."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(f"{field} must be a date or an instant (ISO 8601)", details={"field": field}) from None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if hasattr(value, "year"):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)  # type: ignore[attr-defined]
    raise ValidationError(f"{field} must be a date or an instant (ISO 8601)", details={"field": field})


def period(start: object, end: object) -> tuple[datetime, datetime]:
    """[start, end) as UTC instants; a date as ``end`` means the end of that day."""
    lower = _instant(start, "start")
    upper = _instant(end, "end")
    if (isinstance(end, str) and len(end.strip()) == 10) or not isinstance(end, (str, datetime)):
        upper += timedelta(days=1)  # a day given as the end is included whole
    if upper <= lower:
        raise ValidationError("the period must end after it starts", details={"start": str(start), "end": str(end)})
    return lower, upper


def _tenants(gw: Gateway, lower: datetime, upper: datetime) -> list[dict[str, Any]]:
    """Tenants with sessions in the period: name, scale, agents (as stored) with their shares."""
    rows = gw.store.read_rows("""
        SELECT t.name, a.name, a.primary_provider, a.fallback_provider, length(a.system_prompt), a.enabled_tools,
               count(*) AS sessions
        FROM sessions s JOIN tenants t ON t.id = s.tenant_id JOIN agents a ON a.id = s.agent_id
        WHERE s.created_at >= ? AND s.created_at < ?
        GROUP BY ALL ORDER BY t.name, a.name""", [lower, upper])
    tenants: dict[str, dict[str, Any]] = {}
    for tenant, agent, primary, fallback, prompt, tools, sessions in rows:
        plan = tenants.setdefault(tenant, {"name": tenant, "agents": [], "sessions": 0})
        plan["sessions"] += sessions
        plan["agents"].append({"name": agent, "primary": primary, "fallback": fallback, "prompt_chars": int(prompt),
                               "tools": list(tools), "share": sessions})
    mean = sum(p["sessions"] for p in tenants.values()) / max(len(tenants), 1)
    for plan in tenants.values():
        for agent in plan["agents"]:
            agent["share"] = round(agent["share"] / plan["sessions"], 4)
            if not agent["tools"]:
                del agent["tools"]
        plan["scale"] = round(plan.pop("sessions") / mean, 4)
    return list(tenants.values())


def _arrivals(gw: Gateway, lower: datetime, upper: datetime, tenants: int) -> dict[str, Any]:
    """``sessions_per_hour`` and ``daily_profile`` from sessions per hour of the day, weekdays and weekend apart."""
    rows = gw.store.read_rows("""
        SELECT hour(created_at) AS h, isodow(created_at) >= 6 AS weekend, count(*)
        FROM sessions WHERE created_at >= ? AND created_at < ? GROUP BY ALL""", [lower, upper])
    hours = {False: np.zeros(24), True: np.zeros(24)}  # sessions per hour of the day, summed over the period
    for hour, weekend, count in rows:
        hours[bool(weekend)][hour] += count
    exposure = {False: np.zeros(24), True: np.zeros(24)}  # how many of each hour the period holds
    at = lower
    while at < upper:
        span = min(3600.0, (upper - at).total_seconds()) / 3600.0
        exposure[at.weekday() >= 5][at.hour] += span
        at = at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    rate = {k: np.divide(hours[k], exposure[k], out=np.zeros(24), where=exposure[k] > 0) for k in hours}
    weekdays = exposure[False].sum() > 0
    base = rate[False] if weekdays else rate[True]
    peak = float(base.max()) or 1.0
    profile: dict[str, Any] = {"hourly": [round(float(v) / peak, 4) for v in base]}
    if weekdays and exposure[True].sum() > 0:
        seen = (exposure[True] > 0) & (exposure[False] > 0)
        ratio = rate[True][seen].sum() / max(rate[False][seen].sum(), 1e-9)
        profile["weekend"] = round(float(ratio), 4)
    elif not weekdays:
        profile["weekend"] = 1.0
    return {"sessions_per_hour": round(peak / max(tenants, 1), 4), "daily_profile": profile}


def _conversation(gw: Gateway, lower: datetime, upper: datetime) -> dict[str, Any]:
    """Session length, message size, think time, voice and retry shares."""
    [(sessions, requests, longest, think_mean, think_min, think_max)] = gw.store.read_rows("""
        WITH requests AS (
            SELECT c.session_id, c.request_id, min(c.created_at) AS sent,
                   max(c.created_at + to_milliseconds(c.latency_ms)) AS done
            FROM provider_call_events c JOIN sessions s ON s.id = c.session_id
            WHERE s.created_at >= ? AND s.created_at < ? AND c.status <> 'skipped' GROUP BY ALL),
        ordered AS (
            SELECT session_id, epoch_ms(sent) / 1000.0 - epoch_ms(lag(done) OVER w) / 1000.0 AS think
            FROM requests WINDOW w AS (PARTITION BY session_id ORDER BY sent)),
        per_session AS (SELECT session_id, count(*) AS n FROM requests GROUP BY ALL)
        SELECT (SELECT count(*) FROM per_session), (SELECT sum(n) FROM per_session), (SELECT max(n) FROM per_session),
               avg(think), min(think), max(think)
        FROM ordered WHERE think IS NOT NULL AND think >= 0""", [lower, upper])
    [(chars_mean, chars_log_sd, chars_min, chars_max, voice, users)] = gw.store.read_rows("""
        SELECT avg(length(content)) FILTER (channel = 'chat'), stddev_pop(ln(length(content))) FILTER (channel = 'chat'),
               min(length(content)) FILTER (channel = 'chat'), max(length(content)) FILTER (channel = 'chat'),
               count(*) FILTER (channel = 'voice'), count(*)
        FROM messages WHERE role = 'user' AND created_at >= ? AND created_at < ?""", [lower, upper])
    [(keyed,)] = gw.store.read_rows("SELECT count(*) FROM idempotency_records WHERE created_at >= ? AND created_at < ?",
                                    [lower, upper])
    traffic: dict[str, Any] = {}
    if sessions:
        mean = max(1.0, float(requests) / float(sessions))
        traffic["messages_per_session"] = {"mean": round(mean, 3), "min": 1, "max": int(max(longest, math.ceil(mean))),
                                           "shape": "poisson"}
    if chars_mean:
        low, high = max(1, int(chars_min)), int(chars_max)
        traffic["message_chars"] = {"mean": round(min(max(float(chars_mean), low), high), 1), "min": low, "max": high,
                                    "shape": "lognormal", "spread": round(min(float(chars_log_sd or 0), 3.0), 3)}
    if think_mean is not None:
        quickest = max(0.0, float(think_min))
        traffic["think_time_s"] = {"mean": round(max(float(think_mean), quickest + 1e-3), 2), "min": round(quickest, 2),
                                   "max": round(max(float(think_max), float(think_mean)), 1), "shape": "exponential"}
    if users:
        traffic["voice_share"] = round(float(voice) / float(users), 4)
        traffic["client_retry_share"] = round(min(1.0, float(keyed) / float(users)), 4)
    return traffic


def _prices(gw: Gateway, lower: datetime, upper: datetime) -> dict[str, str] | None:
    """The unit price each vendor's replies were billed at most often, if that differs from the defaults."""
    rows = gw.store.read_rows("""
        SELECT provider, mode(usd_per_1k_tokens) FROM usage_events WHERE created_at >= ? AND created_at < ?
        GROUP BY ALL""", [lower, upper])
    prices = {provider: format(price.normalize(), "f") for provider, price in rows}
    defaults = {name: format(gw.prices.price_per_1k(name).normalize(), "f") for name in prices
                if name in gw.prices.providers}
    return prices if prices != defaults else None


def _vendor_spec(fit: VendorFit) -> dict[str, Any]:
    spec: dict[str, Any] = {"failure_rate": fit.failure_rate, "rate_limit_rate": fit.rate_limit_rate,
                            "latency_ms": list(fit.latency_ms), "spike_rate": fit.spike_rate,
                            "spike_factor": fit.spike_factor}
    if fit.retry_after_ms is not None:
        spec["retry_after_ms"] = list(fit.retry_after_ms)
    return spec


def _incident(found: FoundIncident) -> dict[str, Any]:
    item: dict[str, Any] = {"vendor": found.vendor, "kind": found.kind,
                            "start": found.start.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
                            "end": found.end.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
                            "label": f"fitted {found.kind.replace('_', ' ')}"}
    if found.kind == "rate_limit_storm":
        item["rate"] = min(1.0, found.rate)
    if found.kind == "latency":
        item["factor"] = max(1.0, found.factor)
    return item


def fit_scenario(source: str | Path | Gateway, start: object, end: object, *, name: str = "fitted",
                 seed: int = 1) -> Scenario:
    """A scenario that reproduces the traffic ``source`` (a database file or a gateway) recorded in [start, end).

    ``start``/``end``: dates (``end`` included whole) or instants. Fails with
    VALIDATION_ERROR when the period holds no session.
    """
    lower, upper = period(start, end)
    with open_source(source) as gw:
        tenants = _tenants(gw, lower, upper)
        if not tenants:
            raise ValidationError("no sessions in that period: nothing to fit",
                                  details={"start": lower.isoformat(), "end": upper.isoformat()})
        traffic = {**_arrivals(gw, lower, upper, len(tenants)), **_conversation(gw, lower, upper)}
        incidents = merge_window([i for v in KNOWN_VENDORS for i in find_incidents(gw, v, lower, upper)])
        vendors = {v: fit_vendor(gw, v, lower, upper, [i for i in incidents if i.vendor == v]) for v in KNOWN_VENDORS}
        prices = _prices(gw, lower, upper)
    data: dict[str, Any] = {
        "name": name,
        "description": f"Fitted from the traffic of {lower:%Y-%m-%d %H:%M} to {upper:%Y-%m-%d %H:%M} UTC.",
        "start": lower, "end": upper, "seed": seed, "tenants": tenants, "traffic": traffic,
        "vendors": {v: _vendor_spec(f) for v, f in vendors.items() if f is not None},
        "incidents": [_incident(i) for i in incidents],
    }
    if prices is not None:
        data["prices"] = prices
    try:
        return Scenario.parse(data, source="fitted scenario")
    except ScenarioError as exc:  # a fit the scenario rules refuse is a fault of the fit, said as it is
        raise ScenarioError(f"the fitted scenario is not valid: {exc.message}", details=exc.details) from None


def scenario_yaml(scenario: Scenario) -> str:
    """The scenario as a YAML file a person can read and edit (``load_scenario`` reads it back)."""
    import yaml

    data = scenario.model_dump(mode="json", exclude_defaults=True, exclude={"duration"})
    if "tenants" in data and not isinstance(scenario.tenants, int):  # agents in full: who calls which vendor
        data["tenants"] = [{**plan, "agents": [agent.model_dump(mode="json", exclude={"tools"} if not agent.tools
                                                                else set()) for agent in full.agents]}
                           if full.agents else plan for plan, full in zip(data["tenants"], scenario.tenants, strict=True)]
    data["start"] = scenario.start.isoformat().replace("+00:00", "Z")
    data["end"] = scenario.stop.isoformat().replace("+00:00", "Z")
    order = ["name", "description", "start", "end", "seed", "gateways", "tenants", "traffic", "vendors", "incidents",
             "policy", "prices"]
    ordered = {key: data[key] for key in order if key in data}
    return yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, width=110)

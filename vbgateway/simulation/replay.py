"""``replay``: the traffic a database recorded, sent again through the real gateway under another policy.

"Had we run last Tuesday's traffic with a breaker, what would it have cost?"
The observed arrivals are replayed as they happened: the same sessions of
the same tenants and agents, opened at the same instants, each customer
message sent at the instant it was sent (or, if the gateway under the new
policy answered the one before later than that, as soon as it did: a
customer waits for the reply), with the same text and channel. The gateway
is the real one on virtual time, with a retry ``policy``, a ``prices``
table and other gateway options (a ``breaker``, where the gateway has one);
the vendors behave as fitted from the same period (``fit_vendors.py``: their
rates, latency and incidents), so a replay answers "what would this policy
have done with that day", not "what did the vendors do then".

What the database does not hold is made up, and said so: a message no vendor
answered was never stored, so its text is replayed as its session's nearest
stored message (same size, roughly). The result is compared with what
actually happened, per day, with ``backtest.daily_figures``.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pydantic

from ..audio import synthesize
from ..clock import VirtualClock
from ..errors import AllProvidersFailedError, ValidationError
from ..gateway import Gateway
from ..governance.breaker import BreakerPolicy
from ..providers import VendorA, VendorB
from ..reliability import RetryPolicy
from ..store import Store
from .backtest import METRICS, daily_figures, day_by_day
from .fit import fit_scenario, open_source, period
from .scenario import Incident, Scenario
from .world import _run_here_or_in_a_thread

if TYPE_CHECKING:
    import altair as alt

    from ..tenant import TenantClient

__all__ = ["Replay", "ReplayedSession", "observed_sessions", "replay"]

_VENDORS = {"vendorA": VendorA, "vendorB": VendorB}
_CONTROL = ("tenants", "api_keys", "agents")


@dataclass
class ReplayedSession:
    """A recorded session: who, when, and each customer message (seconds from the start, text, channel)."""

    tenant_id: str
    agent_id: str
    customer_id: str | None
    offset_s: float
    messages: list[tuple[float, str, str]]


def observed_sessions(gw: Gateway, lower: datetime, upper: datetime) -> list[ReplayedSession]:
    """The sessions opened in [lower, upper) with every message their customers sent, answered or not."""
    rows = gw.store.read_rows("""
        WITH chosen AS (SELECT id, tenant_id, agent_id, customer_id, created_at FROM sessions
                        WHERE created_at >= ? AND created_at < ?),
        requests AS (SELECT c.session_id, c.request_id, min(c.created_at) AS sent
                     FROM provider_call_events c JOIN chosen s ON s.id = c.session_id
                     WHERE c.status <> 'skipped' GROUP BY ALL)
        SELECT s.id, s.tenant_id, s.agent_id, s.customer_id, epoch_us(s.created_at), epoch_us(r.sent), m.content,
               m.channel
        FROM chosen s LEFT JOIN requests r ON r.session_id = s.id
        LEFT JOIN messages m ON m.request_id = r.request_id AND m.role = 'user'
        ORDER BY s.created_at, s.id, r.sent""", [lower, upper])
    origin = lower.timestamp()
    sessions: dict[str, ReplayedSession] = {}
    for session_id, tenant_id, agent_id, customer, opened, sent, content, channel in rows:
        plan = sessions.get(session_id)
        if plan is None:
            plan = sessions[session_id] = ReplayedSession(tenant_id, agent_id, customer, opened / 1e6 - origin, [])
        if sent is not None:
            plan.messages.append((sent / 1e6 - origin, content, channel or "chat"))
    for plan in sessions.values():  # a failed message's text was not stored: its nearest stored one stands in
        known = [text for _, text, _ in plan.messages if text is not None]
        for i, (at, text, channel) in enumerate(plan.messages):
            if text is None:
                after = [t for _, t, _ in plan.messages[i:] if t is not None]
                plan.messages[i] = (at, (after or known or ["Hello, can you help me?"])[0], channel)
    return list(sessions.values())


@dataclass
class Replay:
    """What the replay did against what happened, per day, and in total."""

    daily: pd.DataFrame  # day, metric, observed, replayed, change_pct (a rate: percentage points)
    totals: dict[str, Any]
    vendors: Scenario  # the fitted vendors and incidents the replay ran against
    gateway: Gateway | None = field(default=None, repr=False)  # the replayed database (``keep_open``)

    def chart(self) -> alt.FacetChart:
        import altair as alt

        long = self.daily.melt(id_vars=["day", "metric"], value_vars=["observed", "replayed"], var_name="run")
        long["day"] = pd.to_datetime(long["day"])
        chart: alt.FacetChart = alt.Chart(long).mark_bar().encode(
            x=alt.X("run:N", title=None), y=alt.Y("value:Q", title=None),
            color=alt.Color("run:N", title=None, scale=alt.Scale(range=["#2563eb", "#10b981"])),
            column=alt.Column("day:T", title=None), tooltip=["day:T", "metric:N", "run:N", "value:Q"],
        ).properties(width=60, height=110).facet(row=alt.Row("metric:N", title=None)).resolve_scale(y="independent")
        return chart

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.close()
            self.gateway = None


def _breaker_policy(given: Any) -> BreakerPolicy:
    """A ``BreakerPolicy``, or its fields as a mapping; anything else is a VALIDATION_ERROR before any replay."""
    if isinstance(given, BreakerPolicy):
        return given
    try:
        return BreakerPolicy.model_validate(given)
    except pydantic.ValidationError as exc:
        raise ValidationError(f"breaker: not a breaker policy ({exc.errors()[0]['msg']})",
                              details={"field": "breaker"}) from exc


def _gateway(store: Store, clock: VirtualClock, vendors: dict[str, Any], policy: RetryPolicy,
             prices: Any, seed: int, options: dict[str, Any]) -> Gateway:
    accepted = inspect.signature(Gateway.__init__).parameters
    unknown = sorted(name for name in options if name not in accepted)
    if unknown:  # e.g. a breaker on a gateway that has none: say so rather than replay without it
        raise ValidationError(f"this gateway takes no {', '.join(unknown)}", details={"options": unknown})
    return Gateway(store, providers=vendors, clock=clock, retry=policy, prices=prices, seed=f"replay/{seed}",
                   **options)


async def _drive(gw: Gateway, clock: VirtualClock, sessions: list[ReplayedSession], fitted: Scenario,
                 vendors: dict[str, Any]) -> None:
    async def incidents() -> None:
        normal = fitted.vendor_profiles()
        origin = fitted.start.timestamp()
        windows: list[tuple[Incident, float, float]] = []
        for incident in fitted.incidents:
            opens, closes = incident.window(fitted.start)
            windows.append((incident, opens.timestamp() - origin, closes.timestamp() - origin))
        for point in sorted({0.0} | {max(0.0, t) for _, a, b in windows for t in (a, b)}):
            if point > clock.monotonic():
                await clock.sleep(point - clock.monotonic())
            for name, vendor in vendors.items():
                profile = normal[name]
                for incident, first, last in windows:
                    if incident.vendor == name and first <= point < last:
                        profile = incident.apply(profile)
                vendor.profile = profile

    clips: dict[str, bytes] = {}

    async def one(plan: ReplayedSession, client: TenantClient) -> None:
        session = await client.create_session_async(plan.agent_id, customer_id=plan.customer_id,
                                                    metadata={"source": "replay"})
        for at, text, channel in plan.messages:
            if at > clock.monotonic():
                await clock.sleep(at - clock.monotonic())
            try:
                if channel == "voice":
                    audio = clips.get(text) or clips.setdefault(text, synthesize(text))
                    await client.send_voice(session.id, audio)
                else:
                    await client.send_message(session.id, text)
            except AllProvidersFailedError:
                pass  # a failed reply is part of what the replay measures (it is in the attempt log)
        gw.sender.forget(session.id)

    swaps = asyncio.ensure_future(incidents())
    clients: dict[str, TenantClient] = {}
    tasks = []
    for plan in sessions:
        if plan.offset_s > clock.monotonic():
            await clock.sleep(plan.offset_s - clock.monotonic())
        client = clients.get(plan.tenant_id) or clients.setdefault(plan.tenant_id, gw.as_tenant(plan.tenant_id))
        tasks.append(asyncio.ensure_future(one(plan, client)))
    await asyncio.gather(*tasks)
    swaps.cancel()


def replay(source: str | Path | Gateway, start: object, end: object, *, policy: RetryPolicy | None = None,
           breaker: Any = None, prices: Any = None, seed: int = 1, keep_open: bool = False,
           **gateway_options: Any) -> Replay:
    """Replay the traffic of [start, end) under ``policy`` / ``breaker`` / ``prices`` and compare with what happened.

    ``prices``: a price table (mapping of provider to USD per 1,000 tokens);
    by default the prices the period was billed at. ``breaker`` and other
    ``gateway_options`` go to the gateway as they are (VALIDATION_ERROR if
    this gateway does not take them). ``keep_open`` keeps the replayed
    in-memory database open as ``result.gateway``.
    """
    lower, upper = period(start, end)
    with open_source(source) as gw:
        fitted = fit_scenario(gw, lower, upper, seed=seed)
        sessions = observed_sessions(gw, lower, upper)
        observed = daily_figures(gw, lower, upper)
        control = gw.store.table_rows(_CONTROL)
    options = dict(gateway_options)
    if breaker is not None:
        options["breaker"] = _breaker_policy(breaker)
    clock = VirtualClock(start=lower)
    vendors = {name: cls(fitted.vendor_profiles()[name], seed=f"replay/{seed}/{name}") for name, cls in _VENDORS.items()}
    store = Store(":memory:", now=lower, journal=False, commit_window_s=clock.commit_window_s)
    try:
        store.insert_rows(control)
        replayed_gw = _gateway(store, clock, vendors, policy or fitted.policy, prices or fitted.prices, seed, options)
        _run_here_or_in_a_thread(clock, lambda: _drive(replayed_gw, clock, sessions, fitted, vendors))
        store.flush()
        replayed = daily_figures(replayed_gw, lower, upper)
    except BaseException:
        store.close()
        raise
    daily = day_by_day(observed, replayed, "replayed", "change_pct")
    totals = _totals(daily)
    if not keep_open:
        store.close()
        return Replay(daily, totals, fitted)
    return Replay(daily, totals, fitted, replayed_gw)


def _totals(daily: pd.DataFrame) -> dict[str, Any]:
    """The period's messages, failed replies and cost, observed and replayed (rates and p95 as day means)."""
    out: dict[str, Any] = {}
    for metric in METRICS:
        part = daily[daily.metric == metric]
        how = "sum" if metric in ("messages", "cost_usd", "failed_replies") else "mean"
        seen, made = getattr(part.observed, how)(), getattr(part.replayed, how)()
        out[metric] = {"observed": round(float(seen), 6), "replayed": round(float(made), 6)}
    return out

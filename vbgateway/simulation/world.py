"""The simulated world around a gateway: customers, vendors and their incidents, clients that retry.

Nothing here re-implements the gateway: sessions are opened and messages
sent through ``TenantClient`` exactly as the HTTP API does, so retries,
fallback, idempotency, billing and the journal all run their production
code, writing simulated timestamps to DuckDB. What the world adds is what
surrounds a gateway: customers (the workload), vendors whose profile
changes during incidents, clients that retry with the same idempotency key,
and a recorder of what each customer saw. Where the gateway's database
lives and how instances are merged is ``instances.py`` and ``runner.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ..audio import synthesize
from ..clock import VirtualClock
from ..errors import AllProvidersFailedError, BudgetExceededError, GatewayError, RateLimitExceededError
from ..gateway import Gateway
from ..models import RateLimit, Reply
from ..providers import Provider, ProviderRequest, ProviderResponse, VendorA, VendorB
from ..tenant import TenantClient
from .recorder import RowRecorder
from .scenario import KNOWN_VENDORS, Incident, Scenario
from .workload import _CORPUS, HOUR_S, SessionPlan, Workload

__all__ = ["Progress", "World", "agent_vendors", "quiet_vendors", "setup_tenants"]

Progress = Callable[[float, int], None]  # (simulated seconds done, messages done)
_Vendor = VendorA | VendorB  # the simulated vendors a world runs (each a ``Provider``)
_VENDOR_CLASSES: dict[str, type[_Vendor]] = {"vendorA": VendorA, "vendorB": VendorB}
_VOICE_LINES = ("Where is my order?", "I need help with my invoice.", "Please reset my password.",
                "Can I change my plan?", "I want to talk about a refund.", "The app does not start.")


class _Timed:
    """A vendor that notes when each request's latest try ended (the time a customer waited)."""

    def __init__(self, inner: _Vendor, ends: dict[str, float]) -> None:
        self.inner, self.name, self._ends = inner, inner.name, ends
        self._clock = inner.clock

    def bind(self, clock: Any) -> _Timed:
        self.inner.bind(clock)
        self._clock = clock
        return self

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        try:
            return await self.inner.complete(request)
        finally:
            self._ends[request.request_id] = self._clock.monotonic()


@dataclass
class _Tenant:
    client: TenantClient
    agent_ids: list[str]
    primaries: list[str]
    agent_codes: list[int]


@dataclass
class _Run:
    scenario: Scenario
    gw: Gateway
    clock: VirtualClock
    vendors: dict[str, _Vendor]
    tenants: list[_Tenant]
    recorder: RowRecorder
    clips: list[bytes]
    ends: dict[str, float] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    vendor_codes: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    run: int = 0


def _prompt(name: str, chars: int) -> str:
    text = f"You are {name}, a customer service agent. Answer briefly and precisely. "
    while len(text) < chars:
        text += _CORPUS[: chars - len(text)]
    return text[:chars].strip() or name


def setup_tenants(gw: Gateway, scenario: Scenario) -> tuple[list[_Tenant], list[str], list[str]]:
    """Create (or find by name) the scenario's tenants and agents."""
    existing = {t.name: t for t in gw.list_tenants()}
    tenants, tenant_names, agent_names = [], [], []
    for plan in scenario.tenant_plans():
        tenant = existing.get(plan.name) or gw.create_tenant(plan.name)[0]
        if plan.rate_limit is not None and gw.get_rate_limit(tenant.id) != RateLimit(**plan.rate_limit.model_dump()):
            gw.set_rate_limit(tenant.id, **plan.rate_limit.model_dump())
        client = gw.as_tenant(tenant.id)
        have = {a.name: a for a in client.list_agents()}
        agents = []
        for spec in plan.agents:
            agent = have.get(spec.name) or client.create_agent(
                name=spec.name, primary_provider=spec.primary, fallback_provider=spec.fallback,
                system_prompt=_prompt(spec.name, spec.prompt_chars), enabled_tools=list(spec.tools),
                max_output_tokens=spec.max_output_tokens)
            agents.append(agent)
        codes = []
        for agent in agents:
            label = f"{plan.name} / {agent.name}"
            if label not in agent_names:
                agent_names.append(label)
            codes.append(agent_names.index(label))
        tenants.append(_Tenant(client, [a.id for a in agents], [a.primary_provider for a in agents], codes))
        tenant_names.append(plan.name)
    return tenants, tenant_names, agent_names


def agent_vendors(gw: Gateway, tenants: list[_Tenant], labels: list[str]) -> dict[str, tuple[str, str | None]]:
    """Agent label -> (primary, fallback) as stored, for the per-vendor load."""
    out: dict[str, tuple[str, str | None]] = {}
    for tenant in tenants:
        for agent_id, code in zip(tenant.agent_ids, tenant.agent_codes, strict=True):
            agent = tenant.client.get_agent(agent_id)
            out[labels[code]] = (agent.primary_provider, agent.fallback_provider)
    return out


async def _incidents(run: _Run) -> None:
    """Swap vendor profiles as incident windows open and close."""
    sc = run.scenario
    normal = sc.vendor_profiles()
    windows: list[tuple[Incident, timedelta, timedelta]] = []
    for incident in sc.incidents:
        opens, closes = incident.window(sc.start)
        windows.append((incident, opens - sc.start, closes - sc.start))
    points = sorted({0.0} | {max(0.0, t.total_seconds()) for _, a, b in windows for t in (a, b)})
    for point in points:
        wait = point - run.clock.monotonic()
        if wait > 0:
            await run.clock.sleep(wait)
        for name, vendor in run.vendors.items():
            profile = normal[name]
            for incident, first, last in windows:
                if incident.vendor == name and first.total_seconds() <= point < last.total_seconds():
                    profile = incident.apply(profile)
            vendor.profile = profile


async def _call(run: _Run, tenant: _Tenant, session_id: str, content: str, voice: int,
                key: str | None) -> Reply | GatewayError:
    """The reply, or why there is none: every provider failed, or a rate limit or the budget refused it
    (no provider called; the refusal is recorded in request_refusals)."""
    try:
        if voice >= 0:
            return (await tenant.client.send_voice(session_id, run.clips[voice], idempotency_key=key)).reply
        return await tenant.client.send_message(session_id, content, idempotency_key=key)
    except (AllProvidersFailedError, RateLimitExceededError, BudgetExceededError) as exc:
        return exc


def _calls(outcome: Reply | GatewayError, primary: str) -> tuple[int, int]:
    """(provider calls, calls to the primary) that produced this outcome (a provider skipped by its
    circuit breaker was not called)."""
    if isinstance(outcome, Reply):
        providers = [a.provider for a in outcome.metadata.attempts if a.status != "skipped"]
    else:
        providers = [a["provider"] for a in outcome.details.get("attempts", ()) if a["status"] != "skipped"]
    return len(providers), providers.count(primary)


async def _message(run: _Run, tenant: _Tenant, plan: SessionPlan, session_id: str, message: tuple[Any, ...]) -> None:
    index, _, content, voice, retry_after, keyed = message
    clock, primary = run.clock, tenant.primaries[plan.agent]
    key = f"sim-{run.scenario.seed}-{run.run}-{index}" if keyed or retry_after else None
    sent = clock.monotonic()
    if retry_after:  # the client gives up waiting and sends the same request again
        first_task = asyncio.ensure_future(_call(run, tenant, session_id, content, voice, key))
        await clock.sleep(retry_after)
        second = await _call(run, tenant, session_id, content, voice, key)
        first = await first_task
        calls, primary_calls = _calls(first, primary)
        fresh = not (isinstance(second, Reply) and second.metadata.idempotency.replayed) and second is not first
        if fresh:
            more = _calls(second, primary)
            calls, primary_calls = calls + more[0], primary_calls + more[1]
        outcome = second
    else:
        outcome = await _call(run, tenant, session_id, content, voice, key)
        calls, primary_calls = _calls(outcome, primary)
    rec = run.recorder
    if isinstance(outcome, Reply):
        meta, usage = outcome.metadata, outcome.metadata.usage
        end = run.ends.pop(meta.request_id, None)
        end = end if end is not None else clock.monotonic()
        rec.add(index, plan.index, plan.tenant, tenant.agent_codes[plan.agent], sent, (end - sent) * 1000.0,
                voice >= 0, bool(retry_after), meta.idempotency.replayed, True,
                run.vendor_codes[meta.provider_used or ""], meta.fallback_used, calls, primary_calls,
                usage.tokens_in, usage.tokens_out, int(usage.cost_usd.scaleb(10)), meta.request_id)
    else:
        request_id = str(outcome.details.get("requestId", ""))
        end = run.ends.pop(request_id, None)
        end = end if end is not None else clock.monotonic()
        rec.add(index, plan.index, plan.tenant, tenant.agent_codes[plan.agent], sent, (end - sent) * 1000.0,
                voice >= 0, bool(retry_after), False, False, -1, False, calls, primary_calls, 0, 0, 0, request_id)


async def _session(run: _Run, plan: SessionPlan) -> None:
    tenant = run.tenants[plan.tenant]
    session = await tenant.client.create_session_async(tenant.agent_ids[plan.agent],
                                                       customer_id=f"sim-customer-{plan.index}",
                                                       metadata=run.metadata)
    for message in plan.messages:
        await run.clock.sleep(message[1])
        await _message(run, tenant, plan, session.id, message)
    run.gw.sender.forget(session.id)  # the customer is gone: keep a month's memory flat


async def _drive(run: _Run, workload: Workload, progress: Progress | None) -> None:
    loop = asyncio.get_running_loop()
    incidents = loop.create_task(_incidents(run))
    active: set[asyncio.Task[None]] = set()

    def finished(task: asyncio.Task[None]) -> None:
        active.discard(task)
        if not task.cancelled() and task.exception() is not None:
            run.errors.append(task.exception())  # type: ignore[arg-type]

    for hour, plans in enumerate(workload.sessions()):  # this instance's share of the sessions
        for plan in plans:
            wait = plan.offset_s - run.clock.monotonic()
            if wait > 0:
                await run.clock.sleep(wait)
            task = loop.create_task(_session(run, plan))
            active.add(task)
            task.add_done_callback(finished)
        if run.errors:
            break
        if progress is not None:
            progress(min(run.clock.monotonic(), (hour + 1) * HOUR_S), len(run.recorder))
    while active and not run.errors:
        await asyncio.wait(set(active))
    incidents.cancel()
    for task in list(active):
        task.cancel()
    if run.errors:
        raise run.errors[0]
    if progress is not None:
        progress(max(run.clock.monotonic(), run.scenario.duration.total_seconds()), len(run.recorder))


def _run_here_or_in_a_thread(clock: VirtualClock, make: Callable[[], Any]) -> None:
    """Run on the virtual loop; inside a running loop (a notebook) do it on a helper thread.

    The virtual loop cannot nest in Jupyter's loop, and needs none of it: the
    whole simulation runs on the helper thread while the cell waits.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        clock.run(make())
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vbgateway-sim") as pool:
        pool.submit(lambda: clock.run(make())).result()


def quiet_vendors() -> dict[str, Provider]:
    """Vendors for the gateways that only set up and read a run's database (they send nothing)."""
    return {name: cls(seed=0) for name, cls in _VENDOR_CLASSES.items()}


class World:
    """One gateway instance's share of a scenario's world: its clock, its vendors, its customers.

    Everything is seeded from the scenario, the run and the instance number,
    so the same instance does the same wherever it runs.
    """

    def __init__(self, scenario: Scenario, *, run: int, index: int, commit_window_s: float) -> None:
        self.scenario, self.run, self.index = scenario, run, index
        self.clock = VirtualClock(start=scenario.start, commit_window_s=commit_window_s)
        profiles = scenario.vendor_profiles()
        self.vendors = {name: _VENDOR_CLASSES[name](profiles[name], seed=f"{scenario.seed}/{run}/{index}/{name}")
                        for name in KNOWN_VENDORS}
        self._ends: dict[str, float] = {}
        # the gateway's providers: the vendors, noting when each request's latest try ended
        self.providers: dict[str, Provider] = {name: _Timed(v, self._ends)
                                               for name, v in self.vendors.items()}

    def serve(self, gw: Gateway, progress: Progress | None = None) -> tuple[RowRecorder, str]:
        """Send this instance's share of the traffic through ``gw`` (built on ``providers`` and ``clock``).

        Returns what each customer saw, and the digest of the whole scenario's
        traffic (every instance draws all of it, then keeps its share).
        """
        scenario = self.scenario
        tenants, tenant_names, agent_names = setup_tenants(gw, scenario)
        gw.rate_limits.share_among(scenario.gateways)  # each instance serves 1/gateways of the sessions
        vendor_names = list(KNOWN_VENDORS)
        recorder = RowRecorder(tenant_names, agent_names, vendor_names)
        run = _Run(scenario, gw, self.clock, self.vendors, tenants, recorder, [synthesize(t) for t in _VOICE_LINES],
                   self._ends, vendor_codes={name: i for i, name in enumerate(vendor_names)},
                   metadata={"source": "simulation", "scenario": scenario.name}, run=self.run)
        workload = Workload(scenario, voice_clips=len(run.clips), share=(self.index, scenario.gateways))
        _run_here_or_in_a_thread(self.clock, lambda: _drive(run, workload, progress))
        return recorder, workload.digest

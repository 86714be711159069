"""``simulate``: push a scenario's traffic through the real gateway on virtual time.

Nothing here re-implements the gateway: sessions are opened and messages
sent through ``TenantClient`` exactly as the HTTP API does, so retries,
fallback, idempotency, billing and the journal all run their production
code, writing simulated timestamps to DuckDB. What the simulator adds is the
world around it: customers (the workload), vendors whose profile changes
during incidents, clients that retry with the same idempotency key, and a
recorder of what each customer saw.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from ..audio import synthesize
from ..clock import SystemClock, VirtualClock
from ..errors import AllProvidersFailedError
from ..gateway import Gateway
from ..gc_tuning import lean_gc
from ..models import Reply
from ..providers import Provider, ProviderRequest, ProviderResponse, VendorA, VendorB
from ..providers.simulated import SimulatedVendor
from ..reliability import RetryPolicy
from ..store import Store
from ..store.merge import NO_VACUUM, Merge
from ..tenant import TenantClient
from .digest import DIGEST_TABLES, TableSums, add_sums, digest_of, table_sums
from .instances import CONTROL_TABLES, DATA_TABLES, InstanceResult, InstanceSpec, run_in_processes, workers_for
from .recorder import RowRecorder
from .scenario import KNOWN_VENDORS, Scenario, load_scenario
from .workload import _CORPUS, HOUR_S, SessionPlan, Workload

if TYPE_CHECKING:
    from .results import SimulationResult

__all__ = ["DEFAULT_COMMIT_WINDOW_S", "DEFAULT_FLUSH_RECORDS", "Progress", "open_target", "prepare_target",
           "run_instance", "simulate"]

DEFAULT_COMMIT_WINDOW_S = 0.01  # virtual seconds replies wait to share one fsync (journal=True; else no wait)
SIM_DUCKDB_MEMORY = "100MB"  # DuckDB's cache for each database file a simulation writes (more is not faster)
# A month is written, not analysed: DuckDB's default cache (80% of RAM) would keep most of it in memory.
# No vacuum: see ``NO_VACUUM``.
SIM_FILE_SETTINGS: dict[str, bool | int | str] = {"memory_limit": SIM_DUCKDB_MEMORY, **NO_VACUUM}
DEFAULT_FLUSH_RECORDS = 20_000  # replies applied to DuckDB per batch: a pending reply is its JSON (~1 KB)
Progress = Callable[[float, int], None]  # (simulated seconds done, messages done)
_VENDOR_CLASSES: dict[str, type[SimulatedVendor]] = {"vendorA": VendorA, "vendorB": VendorB}
_VOICE_LINES = ("Where is my order?", "I need help with my invoice.", "Please reset my password.",
                "Can I change my plan?", "I want to talk about a refund.", "The app does not start.")


class _Timed:
    """A vendor that notes when each request's latest try ended (the time a customer waited)."""

    def __init__(self, inner: SimulatedVendor, ends: dict[str, float]) -> None:
        self.inner, self.name, self._ends = inner, inner.name, ends
        self._clock = inner.clock

    def bind(self, clock: Any) -> "_Timed":
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
    vendors: dict[str, SimulatedVendor]
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


def _setup_tenants(gw: Gateway, scenario: Scenario) -> tuple[list[_Tenant], list[str], list[str]]:
    """Create (or find by name) the scenario's tenants and agents."""
    existing = {t.name: t for t in gw.list_tenants()}
    tenants, tenant_names, agent_names = [], [], []
    for plan in scenario.tenant_plans():
        tenant = existing.get(plan.name) or gw.create_tenant(plan.name)[0]
        client = gw.as_tenant(tenant.id)
        have = {a.name: a for a in client.list_agents()}
        agents = []
        for spec in plan.agents:
            agent = have.get(spec.name) or client.create_agent(
                name=spec.name, primary_provider=spec.primary, fallback_provider=spec.fallback,
                system_prompt=_prompt(spec.name, spec.prompt_chars), enabled_tools=list(spec.tools))
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


def _agent_vendors(gw: Gateway, tenants: list[_Tenant], labels: list[str]) -> dict[str, tuple[str, str | None]]:
    """Agent label -> (primary, fallback) as stored, for the per-vendor load."""
    out: dict[str, tuple[str, str | None]] = {}
    for tenant in tenants:
        for agent_id, code in zip(tenant.agent_ids, tenant.agent_codes):
            agent = tenant.client.get_agent(agent_id)
            out[labels[code]] = (agent.primary_provider, agent.fallback_provider)
    return out


async def _incidents(run: _Run) -> None:
    """Swap vendor profiles as incident windows open and close."""
    sc = run.scenario
    normal = sc.vendor_profiles()
    windows = [(incident, *(w - sc.start for w in incident.window(sc.start))) for incident in sc.incidents]
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
                key: str | None) -> Reply | AllProvidersFailedError:
    try:
        if voice >= 0:
            return (await tenant.client.send_voice(session_id, run.clips[voice], idempotency_key=key)).reply
        return await tenant.client.send_message(session_id, content, idempotency_key=key)
    except AllProvidersFailedError as exc:
        return exc


def _calls(outcome: Reply | AllProvidersFailedError, primary: str) -> tuple[int, int]:
    """(provider calls, calls to the primary) that produced this outcome."""
    if isinstance(outcome, Reply):
        providers = [a.provider for a in outcome.metadata.attempts]
    else:
        providers = [a["provider"] for a in outcome.details.get("attempts", ())]
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


def simulate(scenario: Scenario | str | Path | dict[str, Any], db: str | Path | duckdb.DuckDBPyConnection = ":memory:", *,
             policy: RetryPolicy | None = None, progress: Progress | None = None,
             commit_window_s: float = DEFAULT_COMMIT_WINDOW_S, flush_records: int = DEFAULT_FLUSH_RECORDS,
             keep_open: bool = False, journal: bool = False, workers: int | None = None) -> SimulationResult:
    """Run ``scenario`` (optionally under another ``policy``) against the database ``db``.

    Tenants and agents are found by name or created; every session, message,
    provider call and usage event lands in ``db`` with simulated timestamps.
    The scenario's gateway instances (``instances.py``) run one after another,
    or ``workers`` at a time in their own processes (by default one per core
    for large runs); the outcome is the same either way. The result holds one
    row per customer message and the summaries. With ``keep_open`` the
    result keeps a gateway on ``db`` (``result.gateway``) for more queries;
    close it with ``result.close()``.
    """
    scenario = load_scenario(scenario)
    if policy is not None:
        scenario = scenario.with_policy(policy)
    started = SystemClock().monotonic()
    target = open_target(db, scenario.start)
    try:
        run_number, before, control = prepare_target(target, scenario)
        count = workers_for(scenario, workers)
        folder = Path(db).parent if isinstance(db, (str, Path)) and str(db) != ":memory:" else None
        with tempfile.TemporaryDirectory(prefix=".vbgateway-sim-", dir=folder) as tmp:
            specs = [InstanceSpec(scenario, k, run_number, None if count == 1 and folder is None else
                                  str(Path(tmp) / f"gateway-{k}.duckdb"), control, commit_window_s, flush_records,
                                  journal) for k in range(scenario.gateways)]
            if count > 1:
                parts = _run_in_processes_and_merge(specs, count, Path(tmp), progress, target)
            else:
                parts = _run_here_and_merge(specs, progress, target)
        return _result(scenario, db, target, parts, before, started, keep_open)
    except BaseException:
        target.close()
        raise


def open_target(db: str | Path | duckdb.DuckDBPyConnection | None, start: datetime) -> Store:
    """The store a run's rows end up in: a file, ``None``/``":memory:"``, or the caller's connection.

    No journal: it makes each acknowledged reply durable before DuckDB holds
    it, at one fsync per group commit, and simulated traffic is sparse in
    virtual time, so nearly every reply would pay its own fsync (about 370
    replies a second instead of thousands). A simulation that crashes is
    simply run again. The same holds for the instances' own databases unless
    ``journal=True`` asks for the production write path, fsyncs included.
    """
    if isinstance(db, duckdb.DuckDBPyConnection):
        return Store(db, now=start, journal=False)  # the caller's connection keeps the caller's settings
    if db is None or str(db) == ":memory:":
        return Store(":memory:", now=start, journal=False)
    return Store(db, now=start, journal=False, settings=SIM_FILE_SETTINGS)


def prepare_target(target: Store, scenario: Scenario) -> tuple[int, TableSums, dict[str, list[tuple[Any, ...]]]]:
    """Create (or find by name) the scenario's tenants and agents in the target database.

    Returns what the instances start from: the run's number (how many times
    the database was opened, which keeps keys of repeated runs apart), the
    sums of the rows earlier runs left (the instances add theirs), and the
    tenants, keys and agents as plain rows for every instance to copy.
    """
    setup = Gateway(target, clock=VirtualClock(start=scenario.start), prices=scenario.prices,
                    providers=_quiet_vendors(), seed=f"{scenario.seed}/setup")
    _setup_tenants(setup, scenario)
    target.flush()
    return target.open_count, table_sums(setup, DATA_TABLES), target.table_rows(CONTROL_TABLES)


def _quiet_vendors() -> dict[str, Provider]:
    """Vendors for the gateways that only set up and read a run's database (they send nothing)."""
    return {name: cls(seed=0) for name, cls in _VENDOR_CLASSES.items()}


def _one_of(progress: Progress | None, k: int, scenario: Scenario, done_before: int) -> Progress | None:
    """Progress of instance ``k`` of instances run in turn, as progress of the whole run."""
    if progress is None:
        return None
    whole = scenario.duration.total_seconds()

    def update(simulated_s: float, messages: int) -> None:
        progress((k * whole + min(simulated_s, whole)) / scenario.gateways, done_before + messages)

    return update


def _run_in_processes_and_merge(specs: list[InstanceSpec], workers: int, tmp: Path, progress: Progress | None,
                                target: Store) -> list[InstanceResult]:
    """Run the instances in processes; append each one's rows to ``target`` as soon as it ends.

    Instances rarely end together (the cores of a shared machine do not run
    at the same speed), so the first merge runs while the last instance
    still works. Merges run one at a time on a helper thread, in the one
    transaction of ``target.merging()``: a run that fails leaves none of
    its instances' rows behind.
    """
    merges: list[Future[None]] = []
    with target.merging() as merge:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vbgateway-merge") as merger:  # waits for them
            parts = run_in_processes(specs, workers, tmp, progress,
                                     lambda spec: merges.append(merger.submit(merge.add_file, str(spec.db))))
        for done in merges:
            done.result()  # a failed merge fails the run
    return parts


def _run_here_and_merge(specs: list[InstanceSpec], progress: Progress | None, target: Store) -> list[InstanceResult]:
    """Run the instances one after another in this process, appending each one's rows as it ends."""
    parts: list[InstanceResult] = []
    with target.merging() as merge:
        for spec in specs:
            done = sum(len(part.recorder) for part in parts)
            parts.append(_run_and_append(spec, merge, _one_of(progress, spec.index, spec.scenario, done)))
    return parts


def _run_and_append(spec: InstanceSpec, merge: Merge, progress: Progress | None) -> InstanceResult:
    """One instance, on an in-memory database unless it has a file, then its rows appended to the target."""
    if spec.db is not None:
        result = run_instance(spec, progress)
        merge.add_file(spec.db)
        return result
    store = open_instance_store(spec)
    try:
        result = run_instance(spec, progress, store)
        merge.add_store(store)
    finally:
        store.close()
    return result


def open_instance_store(spec: InstanceSpec, duckdb_threads: int | None = None) -> Store:
    """The instance's own database (its file, else in memory), holding the tenants, keys and agents of the run.

    ``duckdb_threads``: instances running side by side, one per core, gain
    nothing from DuckDB's own threads but contention.
    """
    settings = dict(SIM_FILE_SETTINGS) if spec.db is not None else {}
    if duckdb_threads is not None:
        settings["threads"] = int(duckdb_threads)
    store = Store(spec.db if spec.db is not None else ":memory:", now=spec.scenario.start,
                  flush_records=spec.flush_records, journal=spec.journal and spec.db is not None,
                  commit_window_s=spec.commit_window_s, settings=settings)
    try:
        store.insert_rows(spec.control)
    except BaseException:
        store.close()
        raise
    return store


def run_instance(spec: InstanceSpec, progress: Progress | None = None, store: Store | None = None, *,
                 duckdb_threads: int | None = None) -> InstanceResult:
    """Serve instance ``spec.index``'s share of the traffic through a gateway on its own database.

    ``store``: the instance's database, opened by ``open_instance_store`` and
    left open for the caller; by default one is opened (with
    ``duckdb_threads``) and closed here.
    """
    scenario, k = spec.scenario, spec.index
    clock = VirtualClock(start=scenario.start, commit_window_s=spec.commit_window_s)
    profiles = scenario.vendor_profiles()
    vendors = {name: _VENDOR_CLASSES[name](profiles[name], seed=f"{scenario.seed}/{spec.run}/{k}/{name}")
               for name in KNOWN_VENDORS}
    ends: dict[str, float] = {}
    providers: dict[str, Provider] = {name: _Timed(v, ends) for name, v in vendors.items()}  # type: ignore[misc]
    own = store is None
    if store is None:
        store = open_instance_store(spec, duckdb_threads)
    try:
        gw = Gateway(store, providers=providers, clock=clock, retry=scenario.policy, prices=scenario.prices,
                     seed=f"{scenario.seed}/{spec.run}/gateway-{k}")
        tenants, tenant_names, agent_names = _setup_tenants(gw, scenario)
        vendor_names = list(KNOWN_VENDORS)
        recorder = RowRecorder(tenant_names, agent_names, vendor_names)
        run = _Run(scenario, gw, clock, vendors, tenants, recorder, [synthesize(t) for t in _VOICE_LINES], ends,
                   vendor_codes={name: i for i, name in enumerate(vendor_names)},
                   metadata={"source": "simulation", "scenario": scenario.name}, run=spec.run)
        workload = Workload(scenario, voice_clips=len(run.clips), share=(k, scenario.gateways))
        with lean_gc():
            _run_here_or_in_a_thread(clock, lambda: _drive(run, workload, progress))
            store.flush()
        sums = table_sums(gw, DATA_TABLES)  # here, in parallel with the other instances, not after the merge
    finally:
        if own:
            store.close()
    return InstanceResult(recorder, clock.monotonic(), workload.digest, sums)


def _all_rows(parts: list[InstanceResult]) -> RowRecorder:
    """Every instance's rows in one recorder, each part let go once copied (a month's rows are large)."""
    merged = parts[0].recorder
    for part in parts[1:]:
        merged.extend(part.recorder)
        part.recorder = RowRecorder(merged.tenants, merged.agents, merged.vendors)
    return merged


def _result(scenario: Scenario, db: str | Path | duckdb.DuckDBPyConnection, target: Store,
            parts: list[InstanceResult], before: TableSums, started: float, keep_open: bool) -> SimulationResult:
    from .results import SimulationResult  # pandas: the parent's side only, never an instance's process

    rows = _all_rows(parts).frame(scenario.start, release=True)
    gw = Gateway(target, prices=scenario.prices, providers=_quiet_vendors())
    try:
        tenants, tenant_names, agent_names = _setup_tenants(gw, scenario)
        result = SimulationResult(scenario=scenario, rows=rows,
                                  db=None if isinstance(db, duckdb.DuckDBPyConnection) or str(db) == ":memory:"
                                  else str(db),
                                  traffic_digest=parts[0].traffic_digest,
                                  tenant_ids={name: t.client.id for name, t in zip(tenant_names, tenants)},
                                  agent_vendors=_agent_vendors(gw, tenants, agent_names),
                                  wall_s=SystemClock().monotonic() - started,
                                  virtual_s=max(part.virtual_s for part in parts),
                                  worker_peak_rss_mb=round(sum(part.peak_rss_mb for part in parts), 1),
                                  gateway=gw if keep_open else None)
    except BaseException:
        gw.close()
        raise
    if keep_open:
        return result
    shared = tuple(table for table in DIGEST_TABLES if table not in DATA_TABLES)  # tenants and agents
    result.database_digest = digest_of(add_sums(before, *(part.table_sums for part in parts), table_sums(gw, shared)))
    gw.close()
    return result

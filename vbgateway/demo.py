"""What ``make demo`` runs: a live chat, a month of simulated history, a report.

1. A scripted chat through both simulated vendors in real time (their
   latencies are real waits on the SystemClock), then through a gateway whose
   vendorA always fails, to show a fallback as it happens, and an
   idempotent retry that is replayed and not billed.
2. Thirty days of simulated traffic for the demo tenants (with a vendorA
   outage) through the real gateway code on virtual time, once per database.
3. The usage report of the last 30 days for all tenants, and each tenant's
   invoices, rendered by the report notebooks: last month's as a final
   statement, this month's as month to date (not final).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from .gateway import Gateway
from .models import Reply
from .providers import Provider, VendorA, VendorB
from .seed import seed_demo

__all__ = ["SCRIPT", "run_demo"]

SCRIPT = (
    ("Support Assistant", "Hi! Can you check my latest invoice?"),
    ("Support Assistant", "Thanks. Can I change my delivery address?"),
    ("Sales Concierge", "Which plan fits a team of twenty?"),
    ("IT Helpdesk", "My laptop will not connect to the VPN."),
)


def _line(agent: str, reply: Reply) -> str:
    meta, usage = reply.metadata, reply.metadata.usage
    latency = sum(a.latency_ms for a in meta.attempts)
    marker = "  FALLBACK" if meta.fallback_used else ""
    marker += "  REPLAYED" if meta.idempotency.replayed else ""
    return (f"{agent:<18} {meta.provider_used:<8} in={usage.tokens_in:<4} out={usage.tokens_out:<4} "
            f"${usage.cost_usd:.6f}  {latency:>5} ms  attempts={len(meta.attempts)}{marker}\n"
            f"{'':<18} > {reply.message.content}")


async def _chat(gw: Gateway, say: Callable[[str], None], script: tuple[tuple[str, str], ...], tag: str) -> None:
    for tenant in gw.list_tenants():
        client = gw.as_tenant(tenant.id)
        agents = {a.name: a for a in client.list_agents()}
        sessions: dict[str, str] = {}
        for agent_name, text in script:
            if agent_name not in agents:
                continue
            if agent_name not in sessions:
                sessions[agent_name] = client.create_session(agents[agent_name].id, customer_id="demo-customer",
                                                             metadata={"source": tag}).id
            reply = await client.send_message(sessions[agent_name], text, idempotency_key=None)
            say(f"[{tenant.name}] you: {text}")
            say(_line(agent_name, reply))


def run_demo(db: str | Path, say: Callable[[str], None] = print, *, reports_dir: str | Path = "reports",
             with_history: bool = True) -> None:
    """The whole demo: live chat, simulated month (first run only), reports."""
    run_chat_demo(db, say)
    if not with_history:
        return
    simulate_history(db, say)
    render_reports(db, reports_dir, say)


def simulate_history(db: str | Path, say: Callable[[str], None] = print, *, days: int = 30) -> bool:
    """``days`` of demo traffic before today, unless this database already has older history.

    Returns whether it simulated, so that ``make demo`` can run any number of times.
    """
    from .simulation.demo import simulate_demo_month

    older = 0
    if Path(db).exists():
        with Gateway.open_reader(db) as reader:
            today = reader.clock.now().date()
            older = int(reader.sql("SELECT count(*) AS n FROM usage_events WHERE created_at < ?",
                                   [today.isoformat()]).n[0])
    if older:
        say(f"\n== {older:,} billed replies before today already in {db}: no new simulated history ==")
        return False
    say(f"\n== Simulating {days} days of traffic for the demo tenants (virtual time, real gateway code) ==")
    from tqdm import tqdm

    bar = tqdm(total=days * 24, unit="sim h", dynamic_ncols=True, leave=False)

    def progress(done_s: float, messages: int) -> None:
        bar.n = min(days * 24, int(done_s // 3600))
        bar.set_postfix_str(f"{messages:,} messages", refresh=False)
        bar.update(0)  # redrawn at most every tqdm mininterval: refresh() would draw every call (a log line each)

    try:
        result = simulate_demo_month(db, days=days, progress=progress)
    finally:
        bar.close()
    summary = result.summary()
    say(f"{summary['messages']:,} messages, {summary['replies']:,} replies "
        f"({(summary['fallback_rate'] or 0):.2%} via fallback), cost ${float(summary['cost_usd']):.2f}")
    return True


def render_reports(db: str | Path, reports_dir: str | Path, say: Callable[[str], None] = print) -> list[Path]:
    """Usage report of the last 30 days (all tenants); last month's invoices (final) and this month's (to date)."""
    from .reports import plan, run_reports

    with Gateway.open_reader(db) as reader:
        today = reader.clock.now().date()
    start = (today - timedelta(days=30)).isoformat()
    last_month = (today.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    jobs = plan(db, "usage", ["all"], start=start, end=today.isoformat())
    for month in (last_month, today.strftime("%Y-%m")):
        jobs += plan(db, "invoice", None, month=month)
    say(f"\n== Rendering {len(jobs)} reports into {reports_dir}/ ==")
    written = run_reports(jobs, db, reports_dir)
    for path in written:
        say(f"  {path}")
    say("\nOpen the HTML files in a browser; the notebooks are in notebooks/ (`make lab` starts JupyterLab).")
    return written


def run_chat_demo(db: str | Path, say: Callable[[str], None] = print) -> None:
    """Live chat through both vendors, a fallback, and an idempotent replay."""
    with Gateway.open(db) as gw:
        seeded = seed_demo(gw)
        if seeded.created:
            say("Seeded the demo tenants (keys: `vbgateway seed` prints them only when it creates them).")
        say("\n== Chat through both simulated vendors ==")
        gw.clock.run(_chat(gw, say, SCRIPT, "demo"))
    failing: dict[str, Provider] = {"vendorA": VendorA(failure_rate=1.0), "vendorB": VendorB(rate_limit_rate=0.0)}
    with Gateway.open(db, providers=failing) as gw:
        say("\n== vendorA down: the Support Assistant falls back to vendorB ==")
        gw.clock.run(_chat(gw, say, SCRIPT[:1], "demo-outage"))
        acme = next(t for t in gw.list_tenants() if t.name == "Acme Corporation")
        client = gw.as_tenant(acme.id)
        agent = next(a for a in client.list_agents() if a.name == "Sales Concierge")
        session = client.create_session(agent.id, customer_id="demo-customer", metadata={"source": "demo-replay"})

        async def replay() -> None:
            say("\n== A client retry with the same Idempotency-Key is replayed, not billed ==")
            for _ in range(2):
                reply = await client.send_message(session.id, "Please send me the price list.",
                                                  idempotency_key=f"demo-{session.id}")
                say(_line(agent.name, reply))

        gw.clock.run(replay())
        totals = gw.sql("SELECT count(*) AS replies, sum(cost_usd) AS cost FROM usage_events")
        say(f"\nDatabase {db}: {int(totals.replies[0])} billed replies, ${float(totals.cost[0] or 0):.6f} in total.")

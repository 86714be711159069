"""The scripted chat that ``make demo`` runs: both vendors, a fallback, a replay.

It talks to the simulated vendors in real time (their latencies are real
waits on the SystemClock), and to a second gateway whose vendorA always
fails, to show a fallback as it happens.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .gateway import Gateway
from .models import Reply
from .providers import VendorA, VendorB
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


def run_demo(db: str | Path, say: Callable[[str], None] = print) -> None:
    with Gateway.open(db) as gw:
        seeded = seed_demo(gw)
        if seeded.created:
            say("Seeded the demo tenants (keys: `vbgateway seed` prints them only when it creates them).")
        say("\n== Chat through both simulated vendors ==")
        gw.clock.run(_chat(gw, say, SCRIPT, "demo"))
    failing = {"vendorA": VendorA(failure_rate=1.0), "vendorB": VendorB(rate_limit_rate=0.0)}
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

"""A gateway process under load against a budget, for the kill -9 test: it sends until it is killed.

    python tests/scripts/budget_child.py DB TENANT_ID AGENT_ID

Real time, real event loop, the journal thread's group commits: waves of 300
customers at once (tests/budget_load.py ``burst``), forever. Prints
"ACK <message id> <cost>" as each reply returns and "WAVE <counts>" after
each wave, every line flushed at once, so the parent knows what was
acknowledged before it kills the process.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from budget_load import burst

from vbgateway import Gateway, RetryPolicy, SystemClock
from vbgateway.providers import VendorA, VendorB


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def forever(client, agent_id: str, clock: SystemClock) -> None:
    while True:
        counts = await burst(client, agent_id, 300, clock.sleep, retries=2, pause_s=0.05,
                             on_reply=lambda r: say(f"ACK {r.message.id} {r.metadata.usage.cost_usd}"))
        say(f"WAVE {dict(counts)}")


def main() -> None:
    db, tenant_id, agent_id = sys.argv[1:4]
    providers = {"vendorA": VendorA(latency_ms=(5, 40), seed=11), "vendorB": VendorB(latency_ms=(5, 40), seed=12)}
    clock = SystemClock()
    gw = Gateway.open(db, providers=providers, clock=clock,
                      retry=RetryPolicy(backoff_base_s=0.01, backoff_cap_s=0.05, retry_after_cap_s=0.05))
    clock.run(forever(gw.as_tenant(tenant_id), agent_id, clock))


if __name__ == "__main__":
    main()

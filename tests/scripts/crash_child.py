"""A gateway process for the crash-recovery tests: it sends messages until it is killed.

    python tests/scripts/crash_child.py DB [--flush-records N] [--seed S]
        plain mode: sends chat messages forever (a new session every 20),
        printing "ACK <message id> <cost> <request id>" after each reply returns.
    python tests/scripts/crash_child.py DB --keyed [--session SES] [--resume N]
        keyed mode: message i is "message i" with idempotency key "key-i", all in
        one session; prints "SESSION <id>" once, "SEND key-i" before each send and
        "ACK key-i <message id> <cost> <replayed>" after it returns.  With
        --resume N it re-sends keys 0..N-1 in --session and exits 0 instead.

The database must already hold tenant "Crash Test" with one agent (the test
creates it).  Vendors answer with zero latency and fail often, and backoff is
zero, so a few hundred billed replies take well under a second of real time.
Every line is flushed at once, so the parent knows exactly what was acknowledged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from vbgateway import Gateway, GatewayError, RetryPolicy
from vbgateway.clock import SystemClock
from vbgateway.providers import VendorA, VendorB


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def plain(client, agent_id: str) -> None:
    session_id = None
    i = 0
    while True:
        if i % 20 == 0:
            session_id = client.create_session(agent_id, customer_id=f"customer-{i // 20}").id
        try:
            reply = await client.send_message(session_id, f"message {i}: please check my invoice")
        except GatewayError as exc:
            if exc.code != "ALL_PROVIDERS_FAILED":
                raise
        else:
            say(f"ACK {reply.message.id} {reply.metadata.usage.cost_usd} {reply.metadata.request_id}")
        i += 1


async def keyed(client, agent_id: str, session_id: str | None, resume: int | None) -> None:
    if session_id is None:
        session_id = client.create_session(agent_id, customer_id="keyed-customer").id
    say(f"SESSION {session_id}")
    i = 0
    while resume is None or i < resume:
        key = f"key-{i}"
        say(f"SEND {key}")
        for _ in range(20):  # a failed request is not stored: its key may simply be retried
            try:
                reply = await client.send_message(session_id, f"message {i}", idempotency_key=key)
                break
            except GatewayError as exc:
                if exc.code != "ALL_PROVIDERS_FAILED":
                    raise
        else:
            raise SystemExit(f"{key}: every provider kept failing")
        replayed = reply.metadata.idempotency.replayed
        say(f"ACK {key} {reply.message.id} {reply.metadata.usage.cost_usd} {replayed}")
        i += 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("--flush-records", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keyed", action="store_true")
    parser.add_argument("--session", default=None)
    parser.add_argument("--resume", type=int, default=None)
    args = parser.parse_args()

    providers = {
        "vendorA": VendorA(latency_ms=(0, 0), failure_rate=0.2, seed=args.seed),
        "vendorB": VendorB(latency_ms=(0, 0), failure_rate=0.1, rate_limit_rate=0.0, seed=args.seed + 1),
    }
    retry = RetryPolicy(backoff_base_s=0.0, backoff_cap_s=0.0)
    # No id seed: ids come from the OS, so a second process never repeats the first one's ids.
    gw = Gateway.open(args.db, providers=providers, clock=SystemClock(), retry=retry,
                      flush_records=args.flush_records)
    tenant = next(t for t in gw.list_tenants() if t.name == "Crash Test")
    client = gw.as_tenant(tenant.id)
    agent_id = client.list_agents()[0].id
    if args.keyed:
        gw.clock.run(keyed(client, agent_id, args.session, args.resume))
    else:
        gw.clock.run(plain(client, agent_id))
    gw.close()


if __name__ == "__main__":
    main()

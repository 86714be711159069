"""The budget promise, on a real DuckDB file: under 1,000 concurrent sends the committed spend never passes the
limit and at least 90% of it is used; no reservation leaks; the same across a kill -9; the same twice under a seed.

"Committed spend" is read the way an auditor would: the sum of ``usage_events`` in the database file, with
DuckDB alone, after the gateway closed (or was killed and reopened).
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from budget_load import MAX_OUTPUT_TOKENS, PROMPT, burst, make_agent, refusal_is_genuine, top_up

from vbgateway import Gateway, RetryPolicy, SystemClock, VirtualClock
from vbgateway.providers import VendorA, VendorB

LIMIT = Decimal("0.025")  # about 100 replies of this agent (a reply costs about 0.00025 USD)
START = datetime(2026, 5, 20, 9, 0, tzinfo=UTC)
CHILD = Path(__file__).parent / "scripts" / "budget_child.py"
TINY = Decimal(1 + 1) * Decimal("0.003") / 1000  # prompt "?" and message "?" (1 token in), 1 token out


def committed(path: Path, tenant_id: str) -> tuple[Decimal, int]:
    """(sum of cost_usd, replies) of the tenant in the file, read by DuckDB alone."""
    with duckdb.connect(str(path), read_only=True) as con:
        total, count = con.execute("SELECT coalesce(sum(cost_usd), 0), count(*) FROM usage_events WHERE tenant_id = ?",
                                   [tenant_id]).fetchone()
    return Decimal(total), int(count)


def one_reservation() -> Decimal:
    """The most one of this load's requests reserves (its longest message, vendorB's price)."""
    tokens_in = math.ceil((len(PROMPT) + len("message 999.9: where is my order?")) / 4)
    return Decimal(tokens_in + MAX_OUTPUT_TOKENS) * Decimal("0.003") / 1000


def run_on_virtual_time(path: Path, seed: int) -> dict[str, object]:
    """1,000 customers at once against the budget, then a top-up: what happened, and what the file holds."""
    clock = VirtualClock(start=START)
    gw = Gateway.open(path, clock=clock, seed=seed)  # the contract's vendors: failures and 429s included
    tenant, key = gw.create_tenant("Acme Corporation")
    client = gw.connect(key)
    agent_id = make_agent(client)
    gw.set_budget(tenant.id, LIMIT)
    outcome = clock.run(burst(client, agent_id, 1000, clock.sleep))
    after_burst = gw.get_budget(tenant.id)
    accepted, refusal = clock.run(top_up(client, agent_id))
    final = gw.get_budget(tenant.id)
    # A request small enough for what is left: accepted, as long as no reservation leaked.
    tiny = client.create_agent(name="Tiny", primary_provider="vendorB", fallback_provider=None, system_prompt="?",
                               max_output_tokens=1)
    fits = clock.run(client.send_message(client.create_session(tiny.id).id, "?")) if final.remaining_usd >= TINY else None
    gw.close()
    return {"tenant": tenant.id, "outcome": outcome, "after_burst": after_burst, "top_up": accepted,
            "refusal": refusal, "final": final, "fits": fits, "committed": committed(path, tenant.id)}


@pytest.fixture(scope="module")
def seeded_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("promise")
    return run_on_virtual_time(folder / "first.duckdb", 7), run_on_virtual_time(folder / "second.duckdb", 7)


def test_a_thousand_concurrent_sends_never_commit_more_than_the_limit(seeded_runs):
    run = seeded_runs[0]
    spent, replies = run["committed"]
    assert spent <= LIMIT
    assert run["outcome"]["ok"] + run["top_up"] + 1 == replies and 80 <= replies <= 120  # + the tiny one
    assert run["outcome"]["refused"] > 900  # the burst really was refused, many times over


def test_at_least_ninety_percent_of_the_budget_is_used(seeded_runs):
    run = seeded_runs[0]
    assert run["after_burst"].spent_usd >= LIMIT * Decimal("0.9")  # by the burst alone
    assert run["committed"][0] >= LIMIT * Decimal("0.9")
    assert LIMIT - run["committed"][0] < one_reservation()  # what is left could not hold one more request


def test_no_reservation_leaks_and_a_send_that_fits_is_accepted_once_load_stops(seeded_runs):
    run = seeded_runs[0]
    assert run["after_burst"].reserved_usd == 0 and run["final"].reserved_usd == 0
    assert run["after_burst"].spent_usd + run["after_burst"].reserved_usd <= LIMIT
    assert refusal_is_genuine(run["refusal"])
    assert run["final"].remaining_usd >= TINY and run["fits"] is not None  # what was left is given out
    assert run["final"].spent_usd + run["fits"].metadata.usage.cost_usd == run["committed"][0]  # ledger = file


def test_the_same_seed_gives_the_same_run(seeded_runs):
    first, second = seeded_runs
    assert first["committed"] == second["committed"]
    assert (first["outcome"], first["top_up"]) == (second["outcome"], second["top_up"])


# ---------------------------------------------------------------------- kill -9
def fast_real_providers() -> dict[str, object]:
    return {"vendorA": VendorA(latency_ms=(5, 40), seed=21), "vendorB": VendorB(latency_ms=(5, 40), seed=22)}


def test_a_kill_9_under_load_loses_no_committed_reply_and_never_passes_the_limit(tmp_path):
    path = tmp_path / "crash.duckdb"
    with Gateway.open(path) as gw:  # real time: the month is today's, as the child's
        tenant, _ = gw.create_tenant("Acme Corporation")
        agent_id = make_agent(gw.as_tenant(tenant.id))
        gw.set_budget(tenant.id, LIMIT)
    child = subprocess.Popen([sys.executable, str(CHILD), str(path), tenant.id, agent_id], stdout=subprocess.PIPE,
                             text=True)
    acked: dict[str, Decimal] = {}
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("ACK "):
                _, message_id, cost = line.split()
                acked[message_id] = Decimal(cost)
                if len(acked) == 40:  # in the middle: hundreds of requests hold reservations or are committing
                    break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    assert len(acked) == 40

    with Gateway.open(path, providers=fast_real_providers(),
                      retry=RetryPolicy(backoff_base_s=0.01, backoff_cap_s=0.05, retry_after_cap_s=0.05)) as gw:
        budget = gw.get_budget(tenant.id)
        stored = {m for (m,) in gw.store.query_rows("SELECT message_id FROM usage_events")}
        assert set(acked) <= stored  # every reply the child acknowledged survived
        assert budget.reserved_usd == 0  # the dead process's reservations are gone
        assert budget.spent_usd == Decimal(gw.store.query_rows("SELECT sum(cost_usd) FROM usage_events")[0][0])
        assert budget.spent_usd <= LIMIT
        client = gw.as_tenant(tenant.id)
        clock = gw.clock
        assert isinstance(clock, SystemClock)
        clock.run(burst(client, agent_id, 1000, clock.sleep, pause_s=0.05))  # carry on to exhaustion
        _, refusal = clock.run(top_up(client, agent_id))
        assert refusal_is_genuine(refusal) and gw.get_budget(tenant.id).reserved_usd == 0
    spent, _ = committed(path, tenant.id)
    assert LIMIT * Decimal("0.9") <= spent <= LIMIT
    with duckdb.connect(str(path), read_only=True) as con:  # each alert committed once, with its crossing reply
        alerts = con.execute("SELECT threshold, spent_usd FROM budget_alerts ORDER BY threshold").fetchall()
    assert [Decimal(t) for t, _ in alerts] == [Decimal("0.5"), Decimal("0.8")]
    assert all(Decimal(t) * LIMIT <= Decimal(s) <= spent for t, s in alerts)

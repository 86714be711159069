"""Load against a budget, shared by the budget promise tests and their child process (scripts/budget_child.py).

``burst``: many customers at once, each with its own session, each sending
one message and trying again a few times while the budget refuses it (as
clients do when a budget frees up). ``top_up``: then one message at a time
until the budget refuses one with nothing in flight.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from vbgateway import GatewayError, Reply

PROMPT = "You are a careful support agent for an online shop. Answer briefly, kindly and precisely. " * 2
MAX_OUTPUT_TOKENS = 40


def make_agent(client: Any) -> str:
    """vendorB first (the dearer, so most replies bill at the price they reserved at), vendorA as fallback."""
    return client.create_agent(name="Budgeted", primary_provider="vendorB", fallback_provider="vendorA",
                               system_prompt=PROMPT, max_output_tokens=MAX_OUTPUT_TOKENS).id


async def burst(client: Any, agent_id: str, senders: int, sleep: Callable[[float], Any], *, retries: int = 6,
                pause_s: float = 0.4, on_reply: Callable[[Reply], None] | None = None) -> Counter[str]:
    """``senders`` customers at once; returns counts of ok / refused (each refusal) / gave_up / failed."""
    sessions = await asyncio.gather(*(client.create_session_async(agent_id, customer_id=f"customer-{i}")
                                      for i in range(senders)))
    outcome: Counter[str] = Counter()

    async def customer(i: int, session_id: str) -> None:
        for attempt in range(retries + 1):
            try:
                reply = await client.send_message(session_id, f"message {i}.{attempt}: where is my order?")
            except GatewayError as exc:
                if exc.code == "ALL_PROVIDERS_FAILED":
                    outcome["failed"] += 1
                    continue
                if exc.code != "BUDGET_EXCEEDED":
                    raise
                outcome["refused"] += 1
                await sleep(pause_s)
                continue
            outcome["ok"] += 1
            if on_reply is not None:
                on_reply(reply)
            return
        outcome["gave_up"] += 1

    await asyncio.gather(*(customer(i, s.id) for i, s in enumerate(sessions)))
    return outcome


async def top_up(client: Any, agent_id: str, most: int = 500) -> tuple[int, GatewayError]:
    """One message at a time until the budget refuses one: (replies accepted, the refusal)."""
    accepted = 0
    while accepted <= most:
        session = await client.create_session_async(agent_id)
        try:
            await client.send_message(session.id, "one more: where is my order?")
        except GatewayError as exc:
            if exc.code == "BUDGET_EXCEEDED":
                return accepted, exc
            if exc.code != "ALL_PROVIDERS_FAILED":
                raise
            continue
        accepted += 1
    raise AssertionError(f"the budget accepted {accepted} replies in a row and refused none")


def refusal_is_genuine(refusal: GatewayError) -> bool:
    """With nothing in flight, a refusal must be because the request truly does not fit."""
    details = refusal.details
    spent, reserved, requested, limit = (Decimal(str(details[k])) for k in ("spent", "reserved", "requested", "limit"))
    return reserved == 0 and spent + requested > limit

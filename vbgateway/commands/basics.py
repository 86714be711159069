"""``vbgateway seed`` and ``vbgateway demo``."""

from __future__ import annotations

import argparse

from ..gateway import Gateway
from ..seed import seed_demo

__all__ = ["DEFAULT_DB", "register"]

DEFAULT_DB = "data/vbgateway.duckdb"


def _seed(args: argparse.Namespace) -> int:
    with Gateway.open(args.db) as gw:
        result = seed_demo(gw)
    if not result.created:
        print(f"{args.db} is already seeded ({len(result.tenants)} demo tenants, {len(result.agents)} agents); "
              "nothing changed.")
        return 0
    bar = "=" * 78
    print(bar)
    print("  DEMO API KEYS: shown once, stored only as hashes. Copy them now.")
    print(bar)
    for tenant in result.tenants:
        if tenant.name in result.api_keys:
            print(f"  {tenant.name:<24} {tenant.id}  {result.api_keys[tenant.name]}")
    print(bar)
    for agent in result.agents:
        fallback = agent.fallback_provider or "none"
        print(f"  agent {agent.id}  {agent.name:<20} {agent.primary_provider} -> {fallback}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.db, reports_dir=args.reports, with_history=not args.chat_only)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    seed = sub.add_parser("seed", help="create the demo tenants and agents (once) and print their API keys")
    seed.add_argument("--db", default=DEFAULT_DB, help=f"database file (default {DEFAULT_DB})")
    seed.set_defaults(func=_seed)
    demo = sub.add_parser("demo", help="seed if needed, chat through both vendors, simulate a month, render reports")
    demo.add_argument("--db", default=DEFAULT_DB, help=f"database file (default {DEFAULT_DB})")
    demo.add_argument("--reports", default="reports", help="where the demo's reports go (default reports/)")
    demo.add_argument("--chat-only", action="store_true",
                      help="only the live chat: no simulated month, no reports")
    demo.set_defaults(func=_demo)

"""``vbgateway providers add|list|price|remove``: real providers as configured data in the database.

Each opens the database as its only writer (a serving gateway holds it:
stop the service first; a gateway loads its providers when it opens).
Nothing is written unless every value checks out. API keys are never taken
on the command line: ``--api-key-env`` names the environment variable the
gateway reads the key from.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from .basics import DEFAULT_DB

__all__ = ["register"]


def _add(args: argparse.Namespace) -> int:
    from ..gateway import Gateway
    from ..providers.admin import add_provider, usd

    with Gateway.open(args.db) as gw:
        info = add_provider(gw, args.name, kind=args.kind, base_url=args.base_url, model=args.model,
                            api_key_env=args.api_key_env, usd_per_1m_input=args.usd_per_1m_input,
                            usd_per_1m_output=args.usd_per_1m_output)
    key = f"key from ${info.api_key_env}" + ("" if info.api_key_set else " (not set in this shell)") \
        if info.api_key_env else "no API key"
    print(f"added provider {info.name}: {info.kind} {info.model} at {info.base_url}, {key}, "
          f"USD {usd(info.rates.usd_per_1m_input)} per 1M tokens in, {usd(info.rates.usd_per_1m_output)} out. "
          "Agents can name it once the gateway (re)opens the database.")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..gateway import Gateway
    from ..providers.admin import list_providers, usd

    with Gateway.open_reader(args.db, wait_s=args.wait) as gw:
        infos, now = list_providers(gw), gw.clock.now()
    if args.json:
        print(json.dumps([info.as_dict() for info in infos], indent=2))
        return 0
    for info in infos:
        where = "" if info.base_url is None else f"  {info.model} at {info.base_url}"
        key = "" if info.api_key_env is None else f"  key ${info.api_key_env}" + (
            "" if info.api_key_set else " (not set)")
        later = len([r for r in info.versions if r.effective_from > now])
        scheduled = f"  ({later} later price change(s) scheduled)" if later else ""
        print(f"{info.name:<20} {info.kind:<9} in {usd(info.rates.usd_per_1m_input)} / out "
              f"{usd(info.rates.usd_per_1m_output)} "
              f"USD per 1M tokens  {info.agents} agent(s){where}{key}{scheduled}")
    return 0


def _price(args: argparse.Namespace) -> int:
    from ..gateway import Gateway
    from ..providers.admin import set_prices, usd

    with Gateway.open(args.db) as gw:
        rates = set_prices(gw, args.name, args.usd_per_1m_input, args.usd_per_1m_output, args.effective_from)
    print(f"{args.name}: USD {usd(rates.usd_per_1m_input)} per 1M tokens in, {usd(rates.usd_per_1m_output)} out, "
          f"from {rates.effective_from.isoformat()}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from ..gateway import Gateway
    from ..providers.admin import remove_provider

    with Gateway.open(args.db) as gw:
        remove_provider(gw, args.name)
    print(f"removed provider {args.name} (billed events keep the rates they were billed at)")
    return 0


def _instant(value: str) -> datetime:
    """An ISO-8601 time with its zone (``Z`` accepted)."""
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO time like 2026-05-01T00:00:00Z") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} needs its time zone, e.g. 2026-05-01T00:00:00Z")
    return when


def _rates(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--usd-per-1m-input", required=True, metavar="USD",
                        help="price of 1,000,000 input (prompt) tokens, e.g. 0.15 (at most 4 decimal places)")
    parser.add_argument("--usd-per-1m-output", required=True, metavar="USD",
                        help="price of 1,000,000 output (completion) tokens, e.g. 0.60")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cmd = sub.add_parser("providers", help="configure real LLM providers (OpenAI-compatible) and their prices")
    actions = cmd.add_subparsers(dest="action", required=True)

    add = actions.add_parser("add", help="add an OpenAI-compatible provider agents can name")
    add.add_argument("name", help="the name agents use (a letter, then letters, digits, '.', '_' or '-')")
    add.add_argument("--kind", default="openai", choices=["openai"],
                     help="openai: any OpenAI-style chat completions service (default)")
    add.add_argument("--base-url", required=True, help="as the OpenAI SDK takes it, e.g. https://api.openai.com/v1")
    add.add_argument("--model", required=True, help="the model to ask, e.g. gpt-4o-mini")
    add.add_argument("--api-key-env", metavar="VARIABLE",
                     help="the environment variable holding the API key (the key itself is never stored)")
    _rates(add)
    add.set_defaults(func=_add)

    listing = actions.add_parser("list", help="every provider agents may name, with its prices now")
    listing.add_argument("--json", action="store_true", help="as JSON")
    listing.add_argument("--wait", type=float, default=60.0, help="seconds to wait for a busy database (default 60)")
    listing.set_defaults(func=_list)

    price = actions.add_parser("price", help="a new version of a provider's prices, from a given time on")
    price.add_argument("name")
    _rates(price)
    price.add_argument("--effective-from", type=_instant, metavar="TIME",
                       help="when the new prices take effect, ISO-8601 with zone (default: now)")
    price.set_defaults(func=_price)

    remove = actions.add_parser("remove", help="remove a configured provider no agent names")
    remove.add_argument("name")
    remove.set_defaults(func=_remove)

    for parser in (add, listing, price, remove):
        parser.add_argument("--db", default=DEFAULT_DB, help=f"database file (default {DEFAULT_DB})")


"""``vbgateway replay --db ... --from ... --to ...``: recorded traffic through the gateway under another policy.

``--policy`` takes the retry policy's fields as JSON (``'{"attempts": 1,
"fallback": false}'``), ``--price vendorA=0.0025`` changes a unit price,
``--breaker`` takes a breaker policy's fields as JSON where this gateway has
breakers. Prints what happened against what the replay did, per day and in
total (``vbgateway.simulation.replay``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register"]


def _json_object(text: str, what: str) -> dict[str, Any]:
    from ..errors import ValidationError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{what} must be a JSON object: {exc.msg}", details={"value": text[:80]}) from None
    if not isinstance(value, dict):
        raise ValidationError(f"{what} must be a JSON object", details={"value": text[:80]})
    return value


def _replay(args: argparse.Namespace) -> int:
    import pydantic

    from .. import reliability
    from ..errors import ValidationError
    from ..simulation.replay import replay

    policy = None
    try:
        if args.policy:
            policy = reliability.RetryPolicy(**_json_object(args.policy, "--policy"))
        breaker = None
        if args.breaker:
            kind = getattr(reliability, "BreakerPolicy", None)
            if kind is None:
                raise ValidationError("this vbgateway has no circuit breaker (--breaker)")
            breaker = kind(**_json_object(args.breaker, "--breaker"))
    except (TypeError, ValueError, pydantic.ValidationError) as exc:
        raise ValidationError(f"invalid policy: {exc}") from None
    prices = None
    if args.price:
        prices = {}
        for item in args.price:
            name, _, value = item.partition("=")
            if not value:
                raise ValidationError("--price takes VENDOR=USD_PER_1K_TOKENS", details={"value": item})
            prices[name.strip()] = value.strip()
    result = replay(args.db, args.start, args.end, policy=policy, breaker=breaker, prices=prices, seed=args.seed)
    if args.chart:
        result.chart().save(args.chart)
    if not args.json:
        table = result.daily.pivot(index="day", columns="metric", values=["observed", "replayed"])
        print(table.round(4).to_string())
    print(json.dumps(result.totals))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("replay", help="replay recorded traffic through the gateway under another policy")
    parser.add_argument("--db", required=True, help="the database whose traffic is replayed")
    parser.add_argument("--from", dest="start", required=True, help="first day (YYYY-MM-DD) or instant (ISO 8601)")
    parser.add_argument("--to", dest="end", required=True, help="last day, included (YYYY-MM-DD), or an instant")
    parser.add_argument("--policy", help='retry policy fields as JSON, e.g. \'{"attempts": 1, "fallback": false}\'')
    parser.add_argument("--breaker", help="circuit breaker policy fields as JSON (where the gateway has breakers)")
    parser.add_argument("--price", action="append", default=[], metavar="VENDOR=USD",
                        help="a unit price in USD per 1,000 tokens (repeatable); others as billed")
    parser.add_argument("--seed", type=int, default=1, help="seed of the replay's vendor draws (default 1)")
    parser.add_argument("--chart", help="also save the chart of both runs (.html, .svg, .png, .json)")
    parser.add_argument("--json", action="store_true", help="print only the totals as one JSON object")
    parser.set_defaults(func=_replay)

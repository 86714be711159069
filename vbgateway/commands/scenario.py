"""``vbgateway scenario fit|backtest``: scenarios made from recorded traffic.

``fit`` writes a scenario file that reproduces a period of a database's
traffic (``vbgateway.simulation.fit_scenario``); ``backtest`` fits it,
simulates it over the same period and prints the days side by side.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register"]


def _fit(args: argparse.Namespace) -> int:
    from ..simulation.fit import fit_scenario, scenario_yaml

    scenario = fit_scenario(args.db, args.start, args.end, name=args.name, seed=args.seed)
    text = scenario_yaml(scenario)
    if args.out == "-":
        print(text, end="")
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    incidents = ", ".join(f"{i.vendor} {i.kind} {i.window(scenario.start)[0]:%m-%d %H:%M}-"
                          f"{i.window(scenario.start)[1]:%H:%M}" for i in scenario.incidents) or "none"
    print(f"{out}: {len(scenario.tenant_plans())} tenants, {scenario.traffic.sessions_per_hour:g} sessions per busy "
          f"hour per tenant; incidents: {incidents}")
    return 0


def _backtest(args: argparse.Namespace) -> int:
    from ..simulation.backtest import backtest

    result = backtest(args.db, args.start, args.end, seed=args.seed, workers=args.workers)
    if args.chart:
        result.chart().save(args.chart)
    if args.json:
        print(json.dumps(result.summary))
        return 0
    table = result.daily.pivot(index="day", columns="metric", values=["observed", "simulated"])
    print(table.round(4).to_string())
    print(json.dumps(result.summary))
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, help="the database whose traffic is fitted")
    parser.add_argument("--from", dest="start", required=True, help="first day (YYYY-MM-DD) or instant (ISO 8601)")
    parser.add_argument("--to", dest="end", required=True, help="last day, included (YYYY-MM-DD), or an instant")
    parser.add_argument("--seed", type=int, default=1, help="the fitted scenario's seed (default 1)")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("scenario", help="scenarios fitted from a database's traffic")
    actions = parser.add_subparsers(dest="action", required=True)
    fit = actions.add_parser("fit", help="write a scenario file reproducing a period of recorded traffic")
    _common(fit)
    fit.add_argument("--out", default="-", help="scenario file to write (YAML; default: print it)")
    fit.add_argument("--name", default="fitted", help="the scenario's name")
    fit.set_defaults(func=_fit)
    check = actions.add_parser("backtest", help="fit, simulate the same period, compare day by day")
    _common(check)
    check.add_argument("--chart", help="also save the observed-against-simulated chart (.html, .svg, .png, .json)")
    check.add_argument("--json", action="store_true", help="print only the summary as one JSON object")
    check.add_argument("--workers", type=int, default=None, help="processes for the simulated gateway instances")
    check.set_defaults(func=_backtest)

"""``vbgateway budget set|show``: a tenant's monthly spend limit, for operators.

    vbgateway budget set TENANT --monthly-usd 50 [--alert-at 0.5,0.8,1.0] [--db FILE]
    vbgateway budget set TENANT --remove [--db FILE]
    vbgateway budget set TENANT --monthly-usd 50 --url http://HOST:PORT --operator-secret-file FILE
    vbgateway budget show TENANT [--db FILE]

TENANT is a tenant id (``tnt_...``) or a tenant's exact name. Bad input is
refused with its code before anything is written. ``set`` opens the database
as its writer, or, while a gateway serves it, asks that gateway (its
``--url`` and ``--operator-secret-file``, or the database's local service:
serving.py); ``show`` reads it, also while a gateway serves it (the
reservations it shows are then this process's: none).
"""

from __future__ import annotations

import argparse
from decimal import Decimal
from pathlib import Path

from ..errors import DatabaseError, ValidationError
from ..gateway import Gateway
from ..governance.budget_values import DEFAULT_ALERT_AT, Budget, parse_alert_at, parse_monthly_usd, plain_decimal
from .basics import DEFAULT_DB
from .serving import add_serving_options, serving_gateway, tenant_id_named, tenant_id_of

__all__ = ["format_budget", "register"]


def _alert_at(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()] if text.strip() else []


def format_budget(tenant_id: str, budget: Budget | None) -> str:
    """The lines ``budget show`` prints."""
    if budget is None:
        return f"tenant {tenant_id}: no budget"
    share = budget.spent_usd / budget.monthly_usd * 100 if budget.monthly_usd else Decimal(0)
    lines = [f"tenant {tenant_id}: budget {plain_decimal(budget.monthly_usd):f} USD for {budget.month}",
             f"  spent     {budget.spent_usd:.6f} USD ({share:.1f}%)",
             f"  reserved  {budget.reserved_usd:.6f} USD",
             f"  remaining {budget.remaining_usd:.6f} USD",
             f"  alerts at {', '.join(f'{plain_decimal(t * 100)}%' for t in budget.alert_at) or 'none'}"]
    for alert in budget.alerts:
        lines.append(f"  crossed {plain_decimal(alert.threshold * 100)}% at {alert.crossed_at:%Y-%m-%d %H:%M:%S} UTC "
                     f"(spent {alert.spent_usd:.6f} USD)")
    return "\n".join(lines)


def _set(args: argparse.Namespace) -> int:
    if args.remove == (args.monthly_usd is not None):
        raise ValidationError("give either --monthly-usd AMOUNT or --remove", details={"field": "monthlyUsd"})
    if args.remove and args.alert_at is not None:
        raise ValidationError("--alert-at goes with --monthly-usd, not with --remove", details={"field": "alertAt"})
    # checked before the database is opened: bad input changes nothing, not even a migration
    limit = None if args.remove else parse_monthly_usd(args.monthly_usd)
    alert_at = DEFAULT_ALERT_AT if args.alert_at is None else parse_alert_at(_alert_at(args.alert_at))
    serving = serving_gateway(args)
    if serving is not None:  # a gateway serves the file: it changes its own ledger and stores the change
        tenant_id = tenant_id_of(args, args.tenant)
        path = f"/v1/operator/tenants/{tenant_id}/budget"
        if limit is None:
            serving.call("DELETE", path)
            print(f"tenant {tenant_id}: budget removed")
        else:
            body = {"monthlyUsd": format(plain_decimal(limit), "f"), "alertAt": [float(t) for t in alert_at]}
            answer = serving.call("PUT", path, body)
            print(format_budget(tenant_id, Budget.model_validate(answer["budget"])))
        return 0
    if not Path(args.db).exists():
        raise DatabaseError(f"no database at {args.db}", details={"path": str(args.db)})
    with Gateway.open(args.db) as gw:
        tenant_id = tenant_id_named(gw, args.tenant)
        budget = gw.set_budget(tenant_id, limit, alert_at=alert_at)
        print(f"tenant {tenant_id}: budget removed" if limit is None else format_budget(tenant_id, budget))
    return 0


def _show(args: argparse.Namespace) -> int:
    with Gateway.open_reader(args.db, wait_s=args.wait) as gw:
        tenant_id = tenant_id_named(gw, args.tenant)
        print(format_budget(tenant_id, gw.get_budget(tenant_id)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    budget = sub.add_parser("budget", help="set or show a tenant's monthly spend limit")
    actions = budget.add_subparsers(dest="action", required=True)
    set_ = actions.add_parser("set", help="give a tenant a monthly limit in USD (UTC months), or remove it")
    set_.add_argument("tenant", help="tenant id (tnt_...) or exact name")
    set_.add_argument("--monthly-usd", default=None, help="the limit, e.g. 50 or 12.50 (exact decimal)")
    set_.add_argument("--alert-at", default=None,
                      help="shares of the limit to alert at, ascending in (0, 1] (default 0.5,0.8,1.0; '' for none)")
    set_.add_argument("--remove", action="store_true", help="remove the tenant's limit")
    set_.add_argument("--db", default=DEFAULT_DB, help=f"database file (default {DEFAULT_DB})")
    add_serving_options(set_)
    set_.set_defaults(func=_set)
    show = actions.add_parser("show", help="a tenant's limit, spend, reservations and alerts this month")
    show.add_argument("tenant", help="tenant id (tnt_...) or exact name")
    show.add_argument("--db", default=DEFAULT_DB, help=f"database file (default {DEFAULT_DB})")
    show.add_argument("--wait", type=float, default=60.0, help="seconds to wait for a busy database (default 60)")
    show.set_defaults(func=_show)

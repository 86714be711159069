"""``vbgateway report usage|invoice``: papermill reports per tenant and period, safe under cron."""

from __future__ import annotations

import argparse
from datetime import date

from .basics import DEFAULT_DB

__all__ = ["register", "resolve_month"]


def resolve_month(value: str | None) -> str | None:
    """``YYYY-MM`` as given, or ``previous`` / ``current`` relative to today (UTC): what cron needs."""
    if value not in ("previous", "current"):
        return value
    from ..clock import SystemClock

    today = SystemClock().now().date()
    first = date(today.year, today.month, 1)
    if value == "previous":
        first = date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1)
    return f"{first:%Y-%m}"


def _report(args: argparse.Namespace) -> int:
    from ..errors import ValidationError
    from ..reports import plan, run_reports

    if (args.date_from is None) != (args.date_to is None):
        raise ValidationError("give both --from and --to (or --month)")
    if args.month is None and args.date_from is None:
        raise ValidationError("give a period: --from YYYY-MM-DD --to YYYY-MM-DD, or --month YYYY-MM|previous|current")
    tenants = None if args.all_tenants else args.tenant
    jobs = plan(args.db, args.kind, tenants, args.date_from, args.date_to, resolve_month(args.month))
    if not jobs:
        print("no tenants: nothing to report")
        return 0
    folders = run_reports(jobs, args.db, args.out, progress=False if args.quiet else None, lock_wait_s=args.lock_wait)
    for folder in folders:
        print(folder)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cmd = sub.add_parser("report", help="run the usage or invoice report notebooks (HTML, notebook, CSV, Parquet)")
    cmd.add_argument("kind", choices=["usage", "invoice"])
    cmd.add_argument("--db", default=DEFAULT_DB, help=f"database file (default {DEFAULT_DB})")
    who = cmd.add_mutually_exclusive_group(required=True)
    who.add_argument("--tenant", action="append", help="tenant id (repeatable); 'all' = one report over every tenant")
    who.add_argument("--all-tenants", action="store_true", help="one report per tenant")
    when = cmd.add_mutually_exclusive_group()
    when.add_argument("--month", help="YYYY-MM, 'previous' or 'current' (UTC)")
    when.add_argument("--from", dest="date_from", help="first UTC day, YYYY-MM-DD (with --to)")
    cmd.add_argument("--to", dest="date_to", help="last UTC day, inclusive, YYYY-MM-DD")
    cmd.add_argument("--out", default="reports", help="output folder (default reports/)")
    cmd.add_argument("--lock-wait", type=float, default=600.0,
                     help="seconds to wait while another run writes to --out (default 600)")
    cmd.add_argument("--quiet", action="store_true", help="no progress bar (it is off anyway without a terminal)")
    cmd.set_defaults(func=_report)

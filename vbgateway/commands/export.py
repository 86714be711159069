"""``vbgateway export``: usage events as hive-partitioned Parquet (tenant_id=/month=)."""

from __future__ import annotations

import argparse

from .basics import DEFAULT_DB

__all__ = ["register"]


def _export(args: argparse.Namespace) -> int:
    from ..export import export_usage

    result = export_usage(args.db, args.out, wait_s=args.wait)
    print(f"exported {result.rows:,} usage events (total {result.cost_usd} USD) in {result.files} files to {result.path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cmd = sub.add_parser("export", help="write every usage event as Parquet partitioned by tenant and month")
    cmd.add_argument("--db", default=DEFAULT_DB, help=f"database file (default {DEFAULT_DB})")
    cmd.add_argument("--out", required=True, help="dataset folder: new, empty, or an earlier export (replaced)")
    cmd.add_argument("--wait", type=float, default=60.0, help="seconds to wait for a busy database (default 60)")
    cmd.set_defaults(func=_export)

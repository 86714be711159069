"""``vbgateway lake compact LAKE``: one file per table, tenant and month (``vbgateway/lake_compact.py``)."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _compact(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..lake_compact import compact_lake

    with tqdm(unit="file", disable=args.quiet, dynamic_ncols=True, desc="compacting") as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = compact_lake(args.lake, progress=progress)
    if result.run_id is None:
        print(f"{args.lake}: nothing to compact ({result.runs} run, {result.files_before:,} files)")
        return 0
    print(f"compacted {result.runs} runs of {args.lake} into run {result.run_id}: "
          f"{result.files_before:,} files now {result.files_after:,}; "
          f"{result.rows.get('usage_events', 0):,} usage events, every row kept")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cmd = sub.add_parser("lake", help="look after a lake written by simulations on a cluster (--lake)")
    actions = cmd.add_subparsers(dest="action", required=True)
    compact = actions.add_parser("compact", help="rewrite the committed runs as one file per table, tenant and month")
    compact.add_argument("lake", help="the lake: a folder or a URL (s3://... with s3fs)")
    compact.add_argument("--quiet", action="store_true", help="no progress bar")
    compact.set_defaults(func=_compact)

"""``vbgateway lake compact LAKE``: one file per table, tenant and month (``vbgateway/lake_compact.py``);
``vbgateway lake vacuum LAKE``: remove the files no committed run names (``vbgateway/lake_vacuum.py``)."""

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


def _vacuum(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from ..errors import ValidationError
    from ..lake_vacuum import RETENTION, vacuum_lake

    if args.older_than is not None and not args.older_than >= 0:  # also NaN
        raise ValidationError("--older-than takes hours, zero or more", details={"older_than": args.older_than})
    older_than = RETENTION if args.older_than is None else timedelta(hours=args.older_than)
    result = vacuum_lake(args.lake, older_than=older_than, dry_run=args.dry_run)
    for path in result.removed if args.dry_run else ():
        print(path)
    verb = "would remove" if args.dry_run else "removed"
    count, hours = len(result.removed), older_than.total_seconds() / 3600
    print(f"{args.lake}: {verb} {count:,} file{'' if count == 1 else 's'} no committed run names "
          f"({result.bytes / 1e6:,.1f} MB); {result.recent:,} younger than {hours:g} h left in place")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cmd = sub.add_parser("lake", help="look after a lake written by simulations on a cluster (--lake)")
    actions = cmd.add_subparsers(dest="action", required=True)
    compact = actions.add_parser("compact", help="rewrite the committed runs as one file per table, tenant and month")
    compact.add_argument("lake", help="the lake: a folder or a URL (s3://... with s3fs)")
    compact.add_argument("--quiet", action="store_true", help="no progress bar")
    compact.set_defaults(func=_compact)
    vacuum = actions.add_parser("vacuum", help="remove files no committed run names (failed runs, killed writers)")
    vacuum.add_argument("lake", help="the lake: a folder or a URL (s3://... with s3fs)")
    vacuum.add_argument("--older-than", type=float, default=None, metavar="HOURS",
                        help="remove only files older than this (default 24: a run in progress is younger)")
    vacuum.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    vacuum.set_defaults(func=_vacuum)

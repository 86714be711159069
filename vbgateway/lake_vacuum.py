"""Vacuuming a lake: removing the files no committed run names.

Readers see the files of the manifest's runs only (``lake.py``), so three
kinds of file cost disk and nothing else: the parts of a run that failed
before its commit, the temporary files of a writer killed mid-file, and the
replaced files of a compaction stopped after its manifest rewrite. The
first two cannot be told apart from a run still in progress (it writes its
files before it commits, and nothing in the lake says it is running), so,
as lake formats do, only files older than a retention (24 hours unless
asked otherwise) are removed and the younger ones are counted and left in
place. Files of runs a compaction replaced are removed whatever their age:
the manifest already says they are gone. Files vbgateway did not write (by
their names) are never touched.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .clock import SystemClock
from .errors import ValidationError
from .lake import CONTROL_TABLES, LAKE_MANIFEST, LAKE_TABLES, committed_manifest, filesystem, is_local_fs

__all__ = ["RETENTION", "Vacuum", "vacuum_lake"]

RETENTION = timedelta(hours=24)
_TABLES = "|".join(t.name for t in (*LAKE_TABLES, *CONTROL_TABLES))
# A run's file (``lake.part_name``, or a control table's ``part-<run>.parquet``), from the lake's root.
_PART = re.compile(rf"(?:{_TABLES})/(?:tenant_id=[^/]+/month=\d{{4}}-\d{{2}}/)?"
                   r"part-([0-9a-z]{1,64})(?:-\d{3})?\.parquet")
# ``lake.put_parquet``'s and ``lake.write_manifest``'s files before their move into place.
_TEMPORARY = re.compile(rf"(?:(?:{_TABLES})/(?:[^/]+/)*\.[0-9a-f]{{32}}|\.{re.escape(LAKE_MANIFEST)}\.[0-9a-f]{{32}})\.tmp")


@dataclass(frozen=True)
class Vacuum:
    """What a vacuum removed (or, on a dry run, would remove): paths from the lake's root, their bytes, and
    how many unnamed files it left because they are younger than the retention."""

    removed: tuple[str, ...]
    bytes: int
    recent: int
    dry_run: bool


def _modified(fs: Any, path: str, info: dict[str, Any]) -> datetime:
    """When a file was last written, from its listing where the filesystem says it (no request per file)."""
    stamp = info.get("mtime", info.get("LastModified"))
    if isinstance(stamp, int | float):
        return datetime.fromtimestamp(stamp, tz=UTC)
    if not isinstance(stamp, datetime):
        stamp = fs.modified(path)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _remove_empty_folders(fs: Any, root: str, removed: list[str]) -> None:
    """Remove the partition folders a local vacuum emptied (object stores have no folders to leave)."""
    folders = sorted({path.rsplit("/", 1)[0] for path in removed}, key=len, reverse=True)
    for folder in folders:
        while folder.startswith(f"{root}/") and "/" in folder[len(root) + 1:]:  # never a table's own folder
            with contextlib.suppress(OSError):
                if fs.ls(folder):
                    break
                fs.rmdir(folder)
            folder = folder.rsplit("/", 1)[0]


def vacuum_lake(lake: str | Path, older_than: timedelta = RETENTION, dry_run: bool = False) -> Vacuum:
    """Remove the lake's files that no committed run names and are older than ``older_than``."""
    if not isinstance(older_than, timedelta) or older_than < timedelta(0):
        raise ValidationError("older_than must be a duration of zero or more",
                              details={"older_than": str(older_than)})
    manifest = committed_manifest(lake)
    fs, root = filesystem(lake)
    committed = {run["run_id"] for run in manifest["runs"]}
    replaced = {str(old.get("run_id")) for run in manifest["runs"] for old in run.get("compacted", ())
                if isinstance(old, dict)} - committed
    cutoff = SystemClock().now() - older_than
    doomed: list[tuple[str, int]] = []
    recent = 0
    for path, info in sorted(fs.find(root, detail=True).items()):
        relative = path[len(root) + 1:]
        part = _PART.fullmatch(relative)
        if part is None and _TEMPORARY.fullmatch(relative) is None:
            continue  # the manifest, a committed file's folder, or something vbgateway did not write
        run_id = part.group(1) if part else None
        if run_id in committed:
            continue
        if run_id in replaced or _modified(fs, path, info) <= cutoff:
            doomed.append((path, int(info.get("size") or 0)))
        else:
            recent += 1
    paths = [path for path, _ in doomed]
    if paths and not dry_run:
        fs.rm(paths)
        if is_local_fs(fs):
            _remove_empty_folders(fs, root, paths)
    return Vacuum(tuple(path[len(root) + 1:] for path in paths), sum(size for _, size in doomed), recent, dry_run)

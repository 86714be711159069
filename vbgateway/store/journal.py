"""A write-ahead journal: how a reply becomes durable in a quarter of a millisecond.

DuckDB is a columnar engine: one small INSERT costs it about a millisecond
here, and a reply touches four tables. So a reply's rows (user message,
assistant message, attempts, usage event, idempotency record) are first
appended to this journal as ONE checksummed line and fsync'ed; that line is
the commit. The rows are then applied to DuckDB in large batches, each batch
in one DuckDB transaction that also records the highest journal sequence
number it contains (``journal_state.applied_seq``).

Recovery (on open) re-applies the lines whose sequence number is above
``applied_seq`` and ignores a torn last line (a crash mid-write: its reply was
never acknowledged). So every acknowledged reply lands exactly once and a
half-written one never lands: no partial and no double billing.

Line format: ``<seq> <crc32 hex> <json>\\n``; the CRC covers the JSON.
"""

from __future__ import annotations

import fcntl
import json
import os
import zlib
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = ["Journal", "JournalLockedError", "JournalRecord", "last_committed_seq"]

JournalRecord = dict[str, list[list[Any]]]  # table name -> rows (lists in column order)


class JournalLockedError(RuntimeError):
    """The journal (and so its database) is in use by another Store, here or elsewhere."""


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$ts": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$dec": str(value)}
    raise TypeError(f"cannot journal a {type(value).__name__}")


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        if "$ts" in value:
            return datetime.fromisoformat(value["$ts"])
        if "$dec" in value:
            return Decimal(value["$dec"])
    return value


def _decode_rows(record: dict[str, list[list[Any]]]) -> JournalRecord:
    return {table: [[_decode_value(v) for v in row] for row in rows] for table, rows in record.items()}


def last_committed_seq(path: Path) -> int:
    """The sequence number of the last intact line of a journal another process writes (0 if none)."""
    return Journal(None, read_path=path).last_seq()


class Journal:
    """An append-only file of committed records, or nothing for in-memory stores."""

    def __init__(self, path: Path | None, *, read_path: Path | None = None) -> None:
        self.path = path or read_path  # read_path: read someone else's journal, no lock, no writes
        self._fd: int | None = None
        if path is not None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise JournalLockedError(f"{path} is held by another open gateway") from None
            self._fd = fd

    @property
    def durable(self) -> bool:
        return self._fd is not None

    def append(self, entries: list[tuple[int, JournalRecord]]) -> None:
        """Write and fsync a group of records; all or nothing reach the file.

        On any failure the file is cut back to its previous length, so a
        failed group never leaves a torn line in front of later records.
        """
        if self._fd is None:
            return
        lines = []
        for seq, record in entries:
            payload = json.dumps(record, default=_encode_value, separators=(",", ":"), ensure_ascii=False)
            data = payload.encode("utf-8")
            lines.append(b"%d %08x " % (seq, zlib.crc32(data)) + data + b"\n")
        blob = b"".join(lines)
        size_before = os.fstat(self._fd).st_size
        try:
            view = memoryview(blob)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
        except BaseException:
            os.ftruncate(self._fd, size_before)
            raise

    def replay(self) -> Iterator[tuple[int, JournalRecord]]:
        """Every intact record in order; stops at the first torn or corrupt line."""
        if self.path is None or not self.path.exists():
            return
        with open(self.path, "rb") as handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    return  # torn tail: the writer died mid-line
                try:
                    seq_text, crc_text, data = raw[:-1].split(b" ", 2)
                    if int(crc_text, 16) != zlib.crc32(data):
                        return
                    yield int(seq_text), _decode_rows(json.loads(data))
                except ValueError:
                    return

    def last_seq(self) -> int:
        last = 0
        for seq, _ in self.replay():
            last = seq
        return last

    def truncate(self) -> None:
        """Forget everything: called once DuckDB holds all of it."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)

    def size(self) -> int:
        return os.fstat(self._fd).st_size if self._fd is not None else 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

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

Batches are applied while commits go on appending, so the lines a batch
covered cannot simply be cut off: ``discard_through`` copies the lines after
them into a fresh file and renames it over the journal (fsync'ed, directory
included, before the next append). Whatever moment a crash picks, the file
under the journal's name holds every line above ``applied_seq``.
"""

from __future__ import annotations

import fcntl
import json
import os
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from ..errors import DatabaseBusyError

__all__ = ["Journal", "JournalRecord", "last_committed_seq"]

_NO_LOCK: AbstractContextManager[Any] = nullcontext()  # appends nobody else makes (nullcontext is reusable)

JournalRecord = dict[str, list[list[Any]]]  # table name -> rows (lists in column order)


def _encode_value(value: Any) -> Any:
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


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(source: int, target: int, start: int, end: int) -> None:
    """Append bytes ``start``..``end`` of file ``source`` to file ``target``."""
    while start < end:
        chunk = os.pread(source, min(end - start, 1 << 20), start)
        if not chunk:
            raise OSError(f"the journal ended at {start} bytes, before {end}")
        view = memoryview(chunk)
        while view:
            view = view[os.write(target, view):]
        start += len(chunk)


def last_committed_seq(path: Path) -> int:
    """The sequence number of the last intact line of a journal another process writes (0 if none)."""
    return Journal(None, read_path=path).last_seq()


def _open_locked(path: Path, flags: int = 0) -> int:
    """Open ``path`` for appending under an exclusive lock; DatabaseBusyError while another store holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DatabaseBusyError(f"{path} is held by another open gateway", details={"path": str(path)}) from None
    return fd


class Journal:
    """An append-only file of committed records, or nothing for in-memory stores."""

    def __init__(self, path: Path | None, *, read_path: Path | None = None) -> None:
        self.path = path or read_path  # read_path: read someone else's journal, no lock, no writes
        self._fd: int | None = None
        # (seq, start offset) of every line appended since the file was last empty,
        # so that discard_through finds where the lines to keep begin without reading the file.
        self._marks: list[tuple[int, int]] = []
        self._untracked = False  # lines from before this instance opened the file (no marks for them)
        self._durable = 0  # the file's size after the last append that succeeded
        if path is not None:
            while True:
                fd = _open_locked(path)
                try:  # a holder may have renamed a compacted file over the path since we opened it
                    if os.fstat(fd).st_ino == os.stat(path).st_ino:
                        break
                except FileNotFoundError:
                    pass
                os.close(fd)
            self._fd = fd
            self._durable = os.fstat(fd).st_size
            self._untracked = self._durable > 0
            self._compact_path.unlink(missing_ok=True)  # left by a crash mid-compaction: never renamed, never needed

    @property
    def _compact_path(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.name + ".compact")

    @property
    def durable(self) -> bool:
        return self._fd is not None

    def append(self, entries: list[tuple[int, JournalRecord]]) -> list[str] | None:
        """Write and fsync a group of records; all or nothing reach the file.

        On any failure the file is cut back to its previous length, so a
        failed group never leaves a torn line in front of later records.
        Returns each record's JSON as written (None when nothing is kept),
        so that applying the records to DuckDB need not encode them again.
        """
        if self._fd is None:
            return None
        lines = []
        payloads = []
        for seq, record in entries:
            data = orjson.dumps(record, default=_encode_value)  # instants as RFC 3339 text (records.py)
            payloads.append(data.decode())
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
        self._durable = size_before + len(blob)
        offset = size_before
        for (seq, _), line in zip(entries, lines, strict=True):
            self._marks.append((seq, offset))
            offset += len(line)
        return payloads

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
            self._durable = 0
            self._marks.clear()
            self._untracked = False

    def discard_through(self, seq: int, appends: AbstractContextManager[Any] = _NO_LOCK) -> None:
        """Forget the lines up to ``seq`` (DuckDB holds them), keeping every later line.

        The later lines are copied to ``<journal>.compact`` while appends go
        on (as far as they were durable); then, holding ``appends`` (the lock
        the caller's appends take), the lines appended meanwhile are copied
        too, the copy is fsync'ed and renamed over the journal, and the
        directory is fsync'ed: no later append can land in a file a crash
        would forget. One discard at a time.
        """
        if self._fd is None:
            return
        with appends:
            durable = self._durable
            keep = self._keep_offset(seq, durable)
            if keep >= durable:
                self.truncate()
                return
        if keep == 0:
            return
        new = _open_locked(self._compact_path, os.O_TRUNC)
        renamed = False
        try:
            _copy(self._fd, new, keep, durable)  # the bulk, while commits go on
            os.fsync(new)
            with appends:
                end = self._durable
                if end > durable:
                    _copy(self._fd, new, durable, end)
                    os.fsync(new)
                os.rename(self._compact_path, self.path)  # type: ignore[arg-type]
                renamed = True
                old, self._fd = self._fd, new  # from here on the path names the new file: append only there
                os.close(old)
                self._marks = [(line_seq, start - keep) for line_seq, start in self._marks if start >= keep]
                self._durable = end - keep
                self._untracked = False
                _fsync_directory(self.path.parent)  # type: ignore[union-attr]
        except BaseException:
            if not renamed:
                os.close(new)
                self._compact_path.unlink(missing_ok=True)
            raise

    def _keep_offset(self, seq: int, size: int) -> int:
        """The offset of the first line above ``seq`` (``size`` if there is none)."""
        if self._untracked:
            return self._scan_for(seq)
        for line_seq, start in self._marks:
            if line_seq > seq:
                return start
        return size

    def _scan_for(self, seq: int) -> int:
        """Like _keep_offset, reading the file (for lines this instance did not append)."""
        offset = 0
        assert self.path is not None
        with open(self.path, "rb") as handle:
            for raw in handle:
                try:
                    if int(raw.split(b" ", 1)[0]) > seq or not raw.endswith(b"\n"):
                        return offset
                except ValueError:
                    return offset  # not a line we wrote: keep it and everything after it
                offset += len(raw)
        return offset

    def size(self) -> int:
        return os.fstat(self._fd).st_size if self._fd is not None else 0

    def close(self, *, delete: bool = False) -> None:
        """Let go of the file; with ``delete`` (DuckDB holds every line) remove it first.

        It is removed while still locked: a store opening it meanwhile finds
        its lock on a file no longer at the path, and opens a fresh one.
        """
        if self._fd is not None:
            if delete and self.path is not None:
                self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None
